/* The pcap record walk, compiled: what container._lockstep and its sequential loop do
 * for one segment of a classic pcap file, and the 16-byte record headers gathered on
 * the way (what container.windows does after them).
 *
 * Why this is C (measured here, `bench/diff.py --busy 1000000`, a 1M-record 338 MB
 * server capture): the numpy walk (lockstep + header windows) takes 0.12-0.19 s per
 * pass over that file (5-8 M records/s); libpcap (tcpdump -r F -w /dev/null) reads
 * the whole file in 0.15 s. The walk is sequential (each record's offset depends on the caplen
 * before it), which numpy can only approximate with the lockstep guesswork; this loop
 * takes 0.06 s (a cache miss per record: the prefetch of the bytes PREFETCH ahead
 * saves a quarter, 0.08 s without). container.py has the whole-command figures.
 *
 * The module knows nothing of damage: it stops after the first record whose caplen is
 * past the sanity cap the caller gives, and says so; a record running past the end of
 * the buffer is returned like any other (the caller sees that its end is past the
 * buffer's), exactly as the Python walk does. Everything else (resync, gaps, truncated
 * tails, timestamps) stays in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_buffers.h"
#include "_pcap_step.h"

PyDoc_STRVAR(pcap_doc,
"pcap(buf, start, stop, swap, maxcap, offs, hdrs) -> (n, off, hard)\n\n"
"Walk the pcap records of buf from offset start (a record) while their offset is <= stop:\n"
"each record's offset goes to offs (int64) and its four header words (ts, sub-second,\n"
"caplen, wirelen; byte-swapped if swap) to hdrs (uint32, four per record). Stops after\n"
"the first record whose caplen is > maxcap (hard is then True), or when offs or hdrs is\n"
"full. Returns the records written, the offset after the last (where the next record\n"
"would be) and hard. stop must leave room for a header: stop + 16 <= len(buf).");

static PyObject *
walk_pcap(PyObject *self, PyObject *args)
{
    Py_buffer in, o_out, h_out;
    Py_ssize_t start, stop;
    int swap;
    unsigned long long maxcap;
    PyObject *outs[2]; /* offs, hdrs */
    if (!PyArg_ParseTuple(args, "y*nnpKOO", &in, &start, &stop, &swap, &maxcap, &outs[0], &outs[1]))
        return NULL;
    Py_buffer b[2];
    const int flags[2] = {PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS};
    if (get_buffers(outs, b, flags, 2) < 0) {
        PyBuffer_Release(&in);
        return NULL;
    }
    o_out = b[0];
    h_out = b[1];
    PyObject *result = NULL;
    if (start < 0 || stop + 16 > in.len) {
        PyErr_SetString(PyExc_ValueError, "start before the buffer, or stop leaves no room for a header");
        goto done;
    }
    const unsigned char *base = (const unsigned char *)in.buf;
    int64_t *offs = (int64_t *)o_out.buf;
    uint32_t *hdrs = (uint32_t *)h_out.buf;
    Py_ssize_t cap = o_out.len / 8;
    if (h_out.len / 16 < cap)
        cap = h_out.len / 16;
    Py_ssize_t n = 0;
    long long off = start;
    int hard = 0;
    Py_BEGIN_ALLOW_THREADS
    while (off <= stop && n < cap) {
        uint32_t h[4];
        long long next = pcap_step(base, in.len, off, swap, h);
        offs[n] = off;
        memcpy(hdrs + 4 * n, h, 16);
        n++;
        off = next;
        if (h[2] > maxcap) {
            hard = 1;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("nLO", n, off, hard ? Py_True : Py_False);
done:
    release_buffers(b, 2);
    PyBuffer_Release(&in);
    return result;
}

static PyMethodDef methods[] = {
    {"pcap", walk_pcap, METH_VARARGS, pcap_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_walk",
    "The pcap record walk, compiled (see _walk.c; used by rig.capture.container).", -1, methods,
};

PyMODINIT_FUNC
PyInit__walk(void)
{
    return PyModule_Create(&module);
}
