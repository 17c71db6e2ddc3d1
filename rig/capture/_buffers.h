/* The Python buffers of a call's arguments, shared by _walk.c and _fast.c: all acquired,
 * or none held (and the error set); released together. */
#ifndef RIG_BUFFERS_H
#define RIG_BUFFERS_H
#include <Python.h>

/* v[k] of o[k] with flags[k], for k < n: 0; on the first that fails, those acquired are
 * released and -1 is returned. */
static int get_buffers(PyObject *const *o, Py_buffer *v, const int *flags, int n)
{
    for (int k = 0; k < n; k++) {
        if (PyObject_GetBuffer(o[k], &v[k], flags[k]) < 0) {
            while (k--)
                PyBuffer_Release(&v[k]);
            return -1;
        }
    }
    return 0;
}

static void release_buffers(Py_buffer *v, int n)
{
    for (int k = 0; k < n; k++)
        PyBuffer_Release(&v[k]);
}

#endif
