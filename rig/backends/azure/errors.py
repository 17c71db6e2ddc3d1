"""Classify Azure errors by ``error.code`` (not by exception class) and say what to do.

ARM reports quota and capacity problems as 409s on the PUT (``OperationNotAllowed``,
``SkuNotAvailable``) or as an asynchronous ``AllocationFailed`` at the end of the
operation; the SDK raises HttpResponseError for all of them. ``kind_of`` maps an error
to a small vocabulary the provisioner acts on (fall back to the next size or not);
``to_rig_error`` gives the one line the user reads.
"""

from __future__ import annotations

from rig.errors import InfraError, RigError, UsageError

SIZE_UNAVAILABLE = "size-unavailable"  # try the next size
QUOTA = "quota"  # the next size (other family) may fit; else ask for quota
AUTH = "auth"
TERMS = "terms"
NOT_FOUND = "not-found"
TIMEOUT = "timeout"
OTHER = "other"

_SIZE_CODES = {
    "skunotavailable", "allocationfailed", "zonalallocationfailed",
    "overconstrainedallocationrequest", "overconstrainedzonalallocationrequest",
    "allocationfailedvmsizenotavailable", "vmsizenotsupported", "invalidparameter:vmsize",
}
_QUOTA_CODES = {"quotaexceeded", "operationnotallowed:quota", "standardskupublicipcountlimitreached",
                "publicipcountlimitreached", "resourcecountexceedslimitperresourcegroup"}
_AUTH_CODES = {"authorizationfailed", "invalidauthenticationtoken", "invalidauthenticationtokentenant",
               "authenticationfailed", "subscriptionnotfound", "linkedauthorizationfailed",
               "expiredauthenticationtoken"}
_TERMS_CODES = {"marketplacepurchaseeligibilityfailed", "resourcepurchasevalidationfailed",
                "marketplaceagreementnotaccepted"}
_NOT_FOUND_CODES = {"resourcegroupnotfound", "resourcenotfound", "notfound"}


class ProvisionTimeout(InfraError):
    """An Azure operation did not finish within the time rig allows it."""


class CapacityError(InfraError):
    """No VM size could be had in a region (capacity or quota): another region may work."""


def code_and_message(exc: BaseException) -> tuple[str, str]:
    """(error.code, error.message) of an azure-core exception, or ("", str(exc))."""
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None) or ""
    message = getattr(err, "message", None) or getattr(exc, "message", None) or str(exc)
    # Async failures sometimes nest the useful code one level down (error.details[0]).
    details = getattr(err, "details", None) or []
    if code in ("", "Conflict", "DeploymentFailed") and details:
        code = getattr(details[0], "code", "") or code
        message = getattr(details[0], "message", "") or message
    if not code:
        status = getattr(exc, "status_code", None)
        if status == 404:
            code = "NotFound"
    return code, " ".join(str(message).split())


def kind_of(exc: BaseException) -> str:
    if isinstance(exc, ProvisionTimeout):
        return TIMEOUT
    if type(exc).__name__ == "ClientAuthenticationError":
        return AUTH
    code, message = code_and_message(exc)
    c = code.lower()
    if c == "operationnotallowed" and "quota" in message.lower():
        c = "operationnotallowed:quota"
    if c == "invalidparameter" and "vmsize" in message.lower().replace(" ", ""):
        c = "invalidparameter:vmsize"
    if c in _SIZE_CODES:
        return SIZE_UNAVAILABLE
    if c in _QUOTA_CODES or c.endswith("quotaexceeded"):
        return QUOTA
    if c in _AUTH_CODES:
        return AUTH
    if c in _TERMS_CODES:
        return TERMS
    if c in _NOT_FOUND_CODES:
        return NOT_FOUND
    return OTHER


def to_rig_error(exc: BaseException, doing: str, *, location: str = "", sizes: tuple[str, ...] = ()) -> RigError:
    """One line: what failed, Azure's code, and what the user can do about it."""
    if isinstance(exc, RigError):
        return exc
    code, message = code_and_message(exc)
    kind = kind_of(exc)
    short = message[:160]
    where = f" in {location}" if location else ""
    if kind == AUTH:
        return InfraError(f"Azure refused the credentials while {doing} ({code or 'no token'}): "
                          "run 'az login' or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, "
                          "and check AZURE_SUBSCRIPTION_ID and your role on it")
    if kind == QUOTA:
        return CapacityError(f"Azure quota exceeded while {doing}{where} ({code}: {short}); "
                          "request more vCPU quota (portal: Subscriptions > Usage + quotas) "
                          "or try another --size / --location")
    if kind == SIZE_UNAVAILABLE:
        tried = f" (tried {', '.join(sizes)})" if sizes else ""
        return CapacityError(f"no capacity for the VM sizes{where}{tried} ({code}); "
                          "try another --location or --size")
    if kind == TERMS:
        return InfraError(f"the image's marketplace terms are not accepted ({code}); "
                          "accept them with 'az vm image terms accept --urn URN' or use --image ubuntu")
    if kind == TIMEOUT:
        return InfraError(f"{exc}")
    if code == "InvalidParameter" or code == "LocationNotAvailableForResourceType":
        return UsageError(f"Azure rejected a parameter while {doing} ({code}: {short})")
    return InfraError(f"Azure error while {doing}{where} ({code or type(exc).__name__}: {short})")
