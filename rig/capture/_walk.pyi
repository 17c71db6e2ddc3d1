# the compiled pcap record walk (_walk.c)
import numpy as np
from _typeshed import ReadableBuffer

def pcap(buf: ReadableBuffer | np.ndarray, start: int, stop: int, swap: bool, maxcap: int, offs: np.ndarray,
         hdrs: np.ndarray, /) -> tuple[int, int, bool]: ...
