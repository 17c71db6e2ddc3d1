"""Classify Azure errors by ``error.code`` (not by exception class) and say what to do.

ARM reports quota and capacity problems as 409s on the PUT (``OperationNotAllowed``,
``SkuNotAvailable``) or as an asynchronous ``AllocationFailed`` at the end of the
operation; the SDK raises HttpResponseError for all of them. A subscription also brings
refusals of its own: Azure Policy (``RequestDisallowedByPolicy``), a resource provider
the caller may not register (``MissingSubscriptionRegistration``), a role without the
permission (``AuthorizationFailed``). ``kind_of`` maps an error to a small vocabulary
(``Kind``) the provisioner acts on (fall back to the next size or not); ``to_rig_error``
gives the one line the user reads, naming what to ask an administrator for.
"""

from __future__ import annotations

import enum
import re

from rig.errors import InfraError, RigError, UsageError


class Kind(enum.Enum):
    SIZE_UNAVAILABLE = "size-unavailable"  # try the next size
    QUOTA = "quota"  # the next size (other family) may fit; else ask for quota
    AUTH = "auth"  # no usable token: log in again
    PERMISSION = "permission"  # a token, but the role lacks an action: ask an administrator
    POLICY = "policy"  # Azure Policy denies the request: ask for an exemption
    REGISTRATION = "registration"  # a resource provider is not registered on the subscription
    NIC_RESERVED = "nic-reserved"  # a NIC is held for 180 s after its VM failed or was deleted
    THROTTLED = "throttled"  # 429 after the SDK's retries
    TERMS = "terms"
    NOT_FOUND = "not-found"
    TIMEOUT = "timeout"
    OTHER = "other"


SIZE_UNAVAILABLE, QUOTA, AUTH, PERMISSION = Kind.SIZE_UNAVAILABLE, Kind.QUOTA, Kind.AUTH, Kind.PERMISSION
POLICY, REGISTRATION, NIC_RESERVED, THROTTLED = Kind.POLICY, Kind.REGISTRATION, Kind.NIC_RESERVED, Kind.THROTTLED
TERMS, NOT_FOUND, TIMEOUT, OTHER = Kind.TERMS, Kind.NOT_FOUND, Kind.TIMEOUT, Kind.OTHER

_CODES = {
    SIZE_UNAVAILABLE: {"skunotavailable", "allocationfailed", "zonalallocationfailed",
                       "overconstrainedallocationrequest", "overconstrainedzonalallocationrequest",
                       "allocationfailedvmsizenotavailable", "vmsizenotsupported", "invalidparameter:vmsize"},
    QUOTA: {"quotaexceeded", "operationnotallowed:quota", "standardskupublicipcountlimitreached",
            "publicipcountlimitreached", "resourcecountexceedslimitperresourcegroup"},
    AUTH: {"invalidauthenticationtoken", "invalidauthenticationtokentenant", "authenticationfailed",
           "expiredauthenticationtoken"},
    PERMISSION: {"authorizationfailed", "linkedauthorizationfailed"},
    POLICY: {"requestdisallowedbypolicy"},
    REGISTRATION: {"missingsubscriptionregistration", "authorizationfailed:register",
                   "subscriptionnotregistered"},
    NIC_RESERVED: {"nicreservedforanothervm"},
    THROTTLED: {"toomanyrequests", "operationnotallowed:throttle", "subscriptionrequeststhrottled"},
    TERMS: {"marketplacepurchaseeligibilityfailed", "resourcepurchasevalidationfailed",
            "marketplaceagreementnotaccepted"},
    NOT_FOUND: {"resourcegroupnotfound", "resourcenotfound", "notfound"},
}
_KIND_OF_CODE = {code: kind for kind, codes in _CODES.items() for code in codes}


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
    if code in ("", "Conflict", "DeploymentFailed", "InvalidTemplateDeployment") and details:
        code = getattr(details[0], "code", "") or code
        message = getattr(details[0], "message", "") or message
    if not code:
        status = getattr(exc, "status_code", None)
        if status == 404:
            code = "NotFound"
        elif status == 429:
            code = "TooManyRequests"
    return code, " ".join(str(message).split())


def kind_of(exc: BaseException) -> Kind:
    if isinstance(exc, ProvisionTimeout):
        return TIMEOUT
    if type(exc).__name__ == "ClientAuthenticationError" and getattr(exc, "status_code", None) != 403:
        return AUTH
    code, message = code_and_message(exc)
    c, low = code.lower(), message.lower()
    if c == "operationnotallowed" and "quota" in low:
        c = "operationnotallowed:quota"
    elif c == "operationnotallowed" and "throttl" in low:
        c = "operationnotallowed:throttle"
    elif c == "invalidparameter" and "vmsize" in low.replace(" ", ""):
        c = "invalidparameter:vmsize"
    elif c == "authorizationfailed" and "/register/action" in low:
        c = "authorizationfailed:register"
    kind = _KIND_OF_CODE.get(c)
    if kind is None and c.endswith("quotaexceeded"):
        kind = QUOTA
    if kind is None and type(exc).__name__ == "ClientAuthenticationError":
        kind = PERMISSION
    return kind or OTHER


def _policy_name(exc: BaseException, message: str) -> str:
    """The display name of the policy assignment that denied the request, if Azure said it."""
    err = getattr(exc, "error", None)
    for item in getattr(err, "additional_info", None) or []:
        info = getattr(item, "info", None) or {}
        if isinstance(info, dict):
            name = info.get("policyAssignmentDisplayName") or info.get("policyDefinitionDisplayName")
            if name:
                return str(name)
    m = re.search(r'"policyAssignment"\s*:\s*\{\s*"name"\s*:\s*"([^"]+)"', message.replace('\\"', '"'))
    return m.group(1) if m else ""


def _namespace(message: str) -> str:
    m = re.search(r"namespace '([\w.]+)'", message) or re.search(r"/providers/(Microsoft\.\w+)/register/action", message)
    return m.group(1) if m else ""


def to_rig_error(exc: BaseException, doing: str, *, location: str = "", sizes: tuple[str, ...] = ()) -> RigError:
    """One line: what failed, Azure's code, and what the user (or an administrator) can do."""
    if isinstance(exc, RigError):
        return exc
    code, message = code_and_message(exc)
    kind = kind_of(exc)
    short = message[:160]
    where = f" in {location}" if location else ""
    if kind == AUTH:
        return InfraError(f"Azure refused the credentials while {doing} ({code or 'no token'}): "
                          "run 'az login' or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, "
                          "and check AZURE_SUBSCRIPTION_ID")
    if kind == PERMISSION:
        return InfraError(f"your Azure role may not do this while {doing} ({code}): ask an administrator "
                          "for the Contributor role on the subscription (or on a resource group rig may create)")
    if kind == POLICY:
        name = _policy_name(exc, message)
        return InfraError(f"Azure Policy refused {doing}{where} ({code}"
                          + (f": '{name}'" if name else "") + "): ask an administrator for a policy exemption "
                          "for resource groups named rig-* (rig needs a public IP and an inbound NSG rule "
                          "from your address)")
    if kind == REGISTRATION:
        ns = _namespace(message) or "the resource provider"
        return InfraError(f"the subscription has not registered {ns} and your role may not register it "
                          f"({code}, while {doing}): ask an administrator to run "
                          f"'az provider register --namespace {ns}'")
    if kind == QUOTA:
        return CapacityError(f"Azure quota exceeded while {doing}{where} ({code}: {short}); ask an administrator "
                             "to raise the vCPU quota (portal: Subscriptions > Usage + quotas) or try another "
                             "--size / --location")
    if kind == SIZE_UNAVAILABLE:
        tried = f" (tried {', '.join(sizes)})" if sizes else ""
        return CapacityError(f"no capacity for the VM sizes{where}{tried} ({code}); "
                             "try another --location or --size")
    if kind == NIC_RESERVED:
        return InfraError(f"Azure still holds the network interface of a failed VM while {doing} ({code}; "
                          "Azure releases it 180 s after the VM is gone); run again")
    if kind == THROTTLED:
        return InfraError(f"Azure throttled rig's requests while {doing} ({code}) after the SDK's retries; "
                          "wait a few minutes and run again")
    if kind == TERMS:
        return UsageError(f"the image needs a marketplace plan whose terms are not accepted ({code}); "
                          "rig runs images without a plan: use --image ubuntu")
    if kind == TIMEOUT:
        return InfraError(f"{exc}")
    if code in ("InvalidParameter", "LocationNotAvailableForResourceType", "NoRegisteredProviderFound"):
        return UsageError(f"Azure rejected a parameter while {doing} ({code}: {short})")
    return InfraError(f"Azure error while {doing}{where} ({code or type(exc).__name__}: {short})")
