# the fast path's decode, compiled (_fast.c)
import numpy as np
from _typeshed import ReadableBuffer

def rows(arr: ReadableBuffer | np.ndarray, off: np.ndarray, caplen: np.ndarray, wirelen: np.ndarray, lt: np.ndarray,
         idx: np.ndarray, table: np.ndarray, fields: np.ndarray, luts: np.ndarray, sigs: np.ndarray,
         qfields: np.ndarray, claimed: np.ndarray, words: np.ndarray, quoted: np.ndarray, /) -> int: ...
def walkscan(buf: ReadableBuffer, start: int, stop: int, swap: bool, maxcap: int, lt: int, luts: np.ndarray,
             qfields: np.ndarray, out: np.ndarray, back: np.ndarray, peers: np.ndarray, idx: np.ndarray,
             offs: np.ndarray, hdrs: np.ndarray, seen: np.ndarray, counts: np.ndarray, fast: np.ndarray,
             /) -> tuple[int, int, bool, int, int]: ...
def gather(col: np.ndarray, rows: np.ndarray, out: np.ndarray, /) -> bool: ...
