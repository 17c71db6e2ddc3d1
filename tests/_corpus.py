"""Where the shared capture corpus is: ../shared/corpus/tcpdump-tests beside the checkout
(CI lays a copy of shared/ beside its clone), or $RIG_CORPUS."""

import os
from pathlib import Path

CORPUS = Path(os.environ.get("RIG_CORPUS")
              or Path(__file__).resolve().parents[2] / "shared" / "corpus" / "tcpdump-tests")
