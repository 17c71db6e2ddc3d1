# the fast path's decode, compiled (_fast.c)
import numpy as np
from _typeshed import ReadableBuffer

def rows(arr: ReadableBuffer | np.ndarray, off: np.ndarray, caplen: np.ndarray, wirelen: np.ndarray, lt: np.ndarray,
         idx: np.ndarray, table: np.ndarray, fields: np.ndarray, luts: np.ndarray, sigs: np.ndarray,
         qfields: np.ndarray, claimed: np.ndarray, words: np.ndarray, quoted: np.ndarray, /) -> int: ...
