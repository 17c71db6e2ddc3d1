# the compiled pcap record walk (_walk.c)
from _typeshed import ReadableBuffer, WriteableBuffer

def pcap(buf: ReadableBuffer, start: int, stop: int, swap: bool, maxcap: int, offs: WriteableBuffer,
         hdrs: WriteableBuffer, /) -> tuple[int, int, bool]: ...
