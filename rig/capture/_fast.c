/* The fast path's decode (fast._chunk and fast._quotes), compiled: a row at a time, the
 * same claims and the same column values as the numpy code, which stays the reference
 * (RIG_PURE_READER=1 selects it; the tests compare both on the corpus and generated
 * captures). Measured reason and figures: fast.py's docstring.
 *
 * Everything but the address numbering is done here: the claimed rows' addresses come
 * back as two little-endian u64 words each (fast._chunk's ``w0`` / ``w1``), numbered
 * by the caller's AddressBook in the same order as the numpy code numbers them.
 *
 * Bytes are read as container.windows reads them: a header window past the end of the
 * buffer reads 0, within it whatever is there (past caplen: the next record's bytes;
 * the checks on caplen decide what is claimed, as in numpy).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* the table fields written, in the order of fast.C_FIELDS (offset -1: not in the dtype) */
enum {
    F_VLAN, F_IPVER, F_SRC, F_DST, F_SRC_I, F_DST_I, F_TTL, F_TOS, F_IP_ID, F_IP_LEN, F_DF, F_PROTO, F_FRAG,
    F_SPORT, F_DPORT, F_SEQ, F_ACK, F_FLAGS, F_WIN, F_MSS, F_WSCALE, F_SACKOK, F_HAS_TS, F_TSVAL, F_TSECR,
    F_OPTSIG, F_ICMP_TYPE, F_ICMP_CODE, F_ICMP_ID, F_ICMP_SEQ, F_PLEN, F_PCAPLEN, F_POFF, F_PHASH, F_STATUS,
    F_COUNT
};
/* QUOTED_DTYPE's fields, in the order of fast.C_QUOTED_FIELDS */
enum { Q_ROW, Q_MTU, Q_PROTO, Q_SRC, Q_DST, Q_SPORT, Q_DPORT, Q_SEQ, Q_IP_ID, Q_COUNT };

#ifndef AHEAD
#define AHEAD 8 /* rows: their first two cache lines are fetched while this one is decoded */
#endif
#define HASH_BYTES 64
#define TRUNCATED_PAYLOAD 1
#define FRAGMENT 6
#define FRAG_MF 1
#define FRAG_LATER 2

typedef struct {
    const unsigned char *base;
    int64_t size;
} Buf;

/* w bytes at p, zero past the end of the buffer (container.windows) */
static inline void window(const Buf *b, int64_t p, unsigned char *dst, int w)
{
    if (p >= 0 && p + w <= b->size) {
        memcpy(dst, b->base + p, w);
        return;
    }
    memset(dst, 0, w);
    if (p < 0 || p >= b->size)
        return;
    memcpy(dst, b->base + p, (size_t)(b->size - p));
}

static inline uint32_t be16(const unsigned char *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = (v << 8) | p[k];
    return v;
}
static inline uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void put8(unsigned char *row, const int64_t *f, int k, uint8_t v)
{
    if (f[k] >= 0)
        row[f[k]] = v;
}
static inline void put16(unsigned char *row, const int64_t *f, int k, uint16_t v)
{
    if (f[k] >= 0)
        memcpy(row + f[k], &v, 2);
}
static inline void put32(unsigned char *row, const int64_t *f, int k, uint32_t v)
{
    if (f[k] >= 0)
        memcpy(row + f[k], &v, 4);
}
static inline void put64(unsigned char *row, const int64_t *f, int k, uint64_t v)
{
    if (f[k] >= 0)
        memcpy(row + f[k], &v, 8);
}

/* table.payload_hash of n bytes at poff (fast.payload_hashes), n > 0 */
static uint64_t payload_hash(const Buf *b, int64_t poff, int64_t n)
{
    unsigned char w[HASH_BYTES];
    window(b, poff, w, HASH_BYTES);
    if (n < HASH_BYTES)
        memset(w + n, 0, HASH_BYTES - n);
    uint64_t x = (uint64_t)n ^ 0x9E3779B97F4A7C15ULL;
    for (int j = 0; j < HASH_BYTES / 8; j++) {
        x ^= le64(w + 8 * j);
        x *= 0xBF58476D1CE4E5B9ULL;
        x ^= x >> 31;
    }
    return x ? x : 1;
}

typedef struct {
    const unsigned char *echo4, *echo6, *err4, *err6, *v6_next;
} Luts;

/* fast._quotes for one ICMP error: returns claim (not an IPv6 quote with extension
 * headers); *has: a record is written to rec (itemsize bytes, QUOTED_DTYPE) */
static int quote(const Buf *b, const unsigned char *hdr, int is4, int64_t qoff, int64_t qlen, const Luts *L,
                 const int64_t *qf, Py_ssize_t qsize, unsigned char *rec, int *has)
{
    unsigned char q[40], w[8];
    window(b, qoff, q, 40);
    int ver = q[0] >> 4;
    int64_t ihl = (int64_t)(q[0] & 0x0F) * 4;
    int v4 = qlen >= 20 && ver == 4 && ihl >= 20;
    int v6 = qlen >= 40 && ver == 6;
    int ext = v6 && L->v6_next[q[6]];
    int mtu4 = is4 && hdr[0] == 3 && hdr[1] == 4;
    int mtu6 = !is4 && hdr[0] == 2;
    memset(rec, 0, qsize);
    uint32_t m6 = be32(hdr + 4);
    uint16_t mtu = mtu4 ? (uint16_t)be16(hdr + 6) : mtu6 ? (uint16_t)(m6 < 0xFFFF ? m6 : 0xFFFF) : 0;
    memcpy(rec + qf[Q_MTU], &mtu, 2);
    int proto = v4 ? q[9] : v6 ? q[6] : 0;
    rec[qf[Q_PROTO]] = (uint8_t)proto;
    uint32_t ipid = v4 ? be16(q + 4) : 0;
    memcpy(rec + qf[Q_IP_ID], &ipid, 4);
    if (v6) {
        memcpy(rec + qf[Q_SRC], q + 8, 16);
        memcpy(rec + qf[Q_DST], q + 24, 16);
    } else if (v4) {
        rec[qf[Q_SRC] + 10] = rec[qf[Q_SRC] + 11] = 0xFF;
        memcpy(rec + qf[Q_SRC] + 12, q + 12, 4);
        rec[qf[Q_DST] + 10] = rec[qf[Q_DST] + 11] = 0xFF;
        memcpy(rec + qf[Q_DST] + 12, q + 16, 4);
    }
    int later = v4 && (be16(q + 6) & 0x1FFF) != 0;
    int64_t hl = v4 ? ihl : 40;
    int64_t avail = qlen - hl;
    window(b, qoff + hl, w, 8);
    int l4 = (v4 && !later) || (v6 && !ext);
    int ports = l4 && (proto == 6 || proto == 17) && avail >= 4;
    uint16_t sp = ports ? (uint16_t)be16(w) : 0, dp = ports ? (uint16_t)be16(w + 2) : 0;
    memcpy(rec + qf[Q_SPORT], &sp, 2);
    memcpy(rec + qf[Q_DPORT], &dp, 2);
    int echo = v4 ? (proto == 1 && (w[0] == 8 || w[0] == 0)) : (proto == 58 && (w[0] == 128 || w[0] == 129));
    uint32_t seq = (l4 && (proto == 6 || echo) && avail >= 8) ? be32(w + 4) : 0;
    memcpy(rec + qf[Q_SEQ], &seq, 4);
    *has = mtu4 || mtu6 || v4 || v6;
    return !ext;
}

PyDoc_STRVAR(rows_doc,
"rows(arr, off, caplen, wirelen, lt, idx, table, fields, luts, sigs, qfields, claimed, words, quoted) -> nq\n\n"
"fast._chunk for the n candidate rows: arr the file's bytes; off, caplen, wirelen, lt, idx\n"
"int64 arrays of n (idx: the rows of table, a contiguous structured array); fields the\n"
"int64 byte offsets of fast.C_FIELDS in a row (-1: absent); luts 5 x 256 u1 (ECHO4, ECHO6,\n"
"ERR4, ERR6, V6_NEXT); sigs SIG_BY_LAYOUT (64 u8); qfields the offsets of\n"
"fast.C_QUOTED_FIELDS in a QUOTED_DTYPE record. Writes the claimed rows' fields but\n"
"src_i / dst_i, claimed (n u1), words (4 x n u8: src w0, src w1, dst w0, dst w1 of the rows)\n"
"and the quoted records (room for n) in row order; returns how many.");

#define NBUF 14

static PyObject *
fast_rows(PyObject *self, PyObject *args)
{
    Py_buffer v[NBUF];
    PyObject *o[NBUF];
    memset(v, 0, sizeof v);
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8],
                          &o[9], &o[10], &o[11], &o[12], &o[13]))
        return NULL;
    /* writable: table (6), claimed (11), words (12), quoted (13) */
    int got = 0;
    PyObject *result = NULL;
    for (; got < NBUF; got++) {
        int wr = got == 6 || got >= 11;
        if (PyObject_GetBuffer(o[got], &v[got], PyBUF_C_CONTIGUOUS | (wr ? PyBUF_WRITABLE : 0)) < 0)
            goto done;
    }
    Py_ssize_t n = v[1].len / 8;
    if (v[2].len / 8 != n || v[3].len / 8 != n || v[4].len / 8 != n || v[5].len / 8 != n || v[7].len != F_COUNT * 8
        || v[8].len != 5 * 256 || v[9].len != 64 * 8 || v[10].len != Q_COUNT * 8 || v[11].len != n
        || v[12].len != n * 32 || (n && v[13].len % n)) {
        PyErr_SetString(PyExc_ValueError, "rows: arrays of the wrong size");
        goto done;
    }
    Buf b = {(const unsigned char *)v[0].buf, v[0].len};
    const int64_t *off = v[1].buf, *caplen = v[2].buf, *wirelen = v[3].buf, *lt = v[4].buf, *idx = v[5].buf;
    unsigned char *table = v[6].buf;
    const int64_t *f = v[7].buf;
    const unsigned char *lu = v[8].buf;
    Luts L = {lu, lu + 256, lu + 512, lu + 768, lu + 1024};
    const uint64_t *sigs = v[9].buf;
    const int64_t *qf = v[10].buf;
    unsigned char *claimed = v[11].buf;
    uint64_t *words = v[12].buf;
    unsigned char *quoted = v[13].buf;
    Py_ssize_t qsize = n ? v[13].len / n : 0;
    /* the table's row size: from the last row written (the caller passes it as the dtype's) */
    Py_ssize_t itemsize = 0;
    if (n) {
        PyObject *isz = PyObject_GetAttrString(o[6], "itemsize");
        if (isz == NULL)
            goto done;
        itemsize = PyLong_AsSsize_t(isz);
        Py_DECREF(isz);
        if (itemsize <= 0)
            goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (idx[i] < 0 || (idx[i] + 1) * itemsize > v[6].len) {
            PyErr_SetString(PyExc_IndexError, "rows: a row index past the table");
            goto done;
        }
    }
    for (int k = 0; k < F_COUNT; k++) {
        if (f[k] >= itemsize) {
            PyErr_SetString(PyExc_ValueError, "rows: a field past the row");
            goto done;
        }
    }
    Py_ssize_t nq = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char g1[20], g2[40], g3[44];
        int64_t o0 = off[i], cl = caplen[i], wl = wirelen[i], t = lt[i];
        if (AHEAD && i + AHEAD < n && off[i + AHEAD] >= 0 && off[i + AHEAD] + 128 <= b.size) {
            __builtin_prefetch(b.base + off[i + AHEAD]);
            __builtin_prefetch(b.base + off[i + AHEAD] + 64);
        }
        claimed[i] = 0;
        /* ---- link layer */
        window(&b, o0, g1, 20);
        int eth = t == 1, vl = eth && be16(g1 + 12) == 0x8100, sll = t == 113, sll2 = t == 276;
        int ver0 = g1[0] >> 4;
        int64_t raw_et = ver0 == 4 ? 0x0800 : ver0 == 6 ? 0x86DD : 0;
        if ((t == 228 && ver0 != 4) || (t == 229 && ver0 != 6))
            raw_et = 0;
        int64_t et = vl ? be16(g1 + 16) : eth ? be16(g1 + 12) : sll ? be16(g1 + 14) : sll2 ? be16(g1) : raw_et;
        int64_t l3 = vl ? 18 : eth ? 14 : sll ? 16 : sll2 ? 20 : 0;
        uint16_t vlan = vl ? (uint16_t)(be16(g1 + 14) & 0x0FFF) : 0;
        int ok = et == 0x0800 || et == 0x86DD;
        /* ---- IP header */
        window(&b, o0 + l3, g2, 40);
        int is4 = et == 0x0800 && g2[0] == 0x45;
        uint32_t fr = be16(g2 + 6);
        int later = is4 && (fr & 0x1FFF) != 0;
        int first = is4 && (fr & 0x2000) != 0 && !later;
        int is6 = et == 0x86DD && (g2[0] >> 4) == 6;
        int64_t wire_ip = wl - l3 > 0 ? wl - l3 : 0;
        int64_t tl4 = be16(g2 + 2);
        if (tl4 == 0)
            tl4 = wire_ip;
        int64_t pl6 = be16(g2 + 4);
        if (pl6 == 0)
            pl6 = wire_ip - 40 > 0 ? wire_ip - 40 : 0;
        int64_t tl = is4 ? tl4 : 40 + pl6;
        int64_t iphl = is4 ? 20 : 40;
        int proto = is4 ? g2[9] : g2[6];
        int64_t l4 = l3 + iphl, ipend = l3 + tl, room = tl - iphl;
        int is_tcp = proto == 6 && !later, is_udp = proto == 17 && !later;
        int is_icmp = ((is4 && proto == 1) || (is6 && proto == 58)) && !later;
        int ok_later = ok && later && tl >= 20 && tl <= wire_ip && cl >= l3 + 20;
        ok = ok && (is4 || is6) && (is_tcp || is_udp || is_icmp) && tl <= wire_ip;
        /* ---- L4 header */
        window(&b, o0 + l4, g3, 44);
        int64_t doff = (int64_t)(g3[12] >> 4) * 4;
        int64_t hdr = is_tcp ? doff : 8;
        ok = ok && cl >= l4 + hdr && room >= hdr;
        uint32_t o5 = be32(g3 + 20), o6 = be32(g3 + 24), o7 = be32(g3 + 28), o8 = be32(g3 + 32),
                 o9 = be32(g3 + 36), s10 = be16(g3 + 20);
        int nnt = doff == 32 && o5 == 0x0101080A;
        int nns = doff == 32 && o5 == 0x0101050A;
        int nntnns = doff == 44 && o5 == 0x0101080A && o8 == 0x0101050A;
        int mss_only = doff == 24 && s10 == 0x0204;
        int lsyn = doff == 40 && s10 == 0x0204 && o6 == 0x0402080A && (o9 & 0xFFFFFF00u) == 0x01030300;
        int wsyn = doff == 32 && s10 == 0x0204 && (o6 & 0xFFFFFF00u) == 0x01030300 && o7 == 0x01010402;
        int tcp_ok = doff == 20 || nnt || nns || nntnns || mss_only || lsyn || wsyn;
        ok = ok && (is_tcp ? tcp_ok : (is_udp || is_icmp));
        int echo = 0;
        unsigned char *rec = NULL;
        int has = 0;
        if (ok && is_icmp) {
            echo = is4 ? L.echo4[g3[0]] : L.echo6[g3[0]];
            int err = is4 ? L.err4[g3[0]] : L.err6[g3[0]];
            if (err) {
                int64_t e = ipend < cl ? ipend : cl;
                rec = quoted + nq * qsize;
                if (!quote(&b, g3, is4, o0 + l4 + 8, e - l4 - 8, &L, qf, qsize, rec, &has))
                    ok = 0;
            }
        }
        ok = ok || ok_later;
        if (!ok)
            continue;
        claimed[i] = 1;
        if (rec != NULL && has) {
            uint32_t r = (uint32_t)idx[i];
            memcpy(rec + qf[Q_ROW], &r, 4);
            nq++;
        }
        unsigned char *row = table + idx[i] * itemsize;
        int tcp = is_tcp, icmp = is_icmp, lat = later;
        put16(row, f, F_VLAN, vlan);
        put8(row, f, F_IPVER, is4 ? 4 : 6);
        uint64_t sw0, sw1, dw0, dw1;
        if (is4) {
            sw0 = dw0 = 0;
            sw1 = ((uint64_t)le32(g2 + 12) << 32) | 0xFFFF0000u;
            dw1 = ((uint64_t)le32(g2 + 16) << 32) | 0xFFFF0000u;
        } else {
            sw0 = le64(g2 + 8);
            sw1 = le64(g2 + 16);
            dw0 = le64(g2 + 24);
            dw1 = le64(g2 + 32);
        }
        words[i] = sw0;
        words[n + i] = sw1;
        words[2 * n + i] = dw0;
        words[3 * n + i] = dw1;
        if (f[F_SRC] >= 0) {
            memcpy(row + f[F_SRC], &sw0, 8);
            memcpy(row + f[F_SRC] + 8, &sw1, 8);
        }
        if (f[F_DST] >= 0) {
            memcpy(row + f[F_DST], &dw0, 8);
            memcpy(row + f[F_DST] + 8, &dw1, 8);
        }
        put8(row, f, F_TTL, is4 ? g2[8] : g2[7]);
        put8(row, f, F_TOS, is4 ? g2[1] : (uint8_t)(((g2[0] & 0x0F) << 4) | (g2[1] >> 4)));
        if (is4) {
            put32(row, f, F_IP_ID, be16(g2 + 4));
            put8(row, f, F_DF, (uint8_t)((fr >> 14) & 1));
        }
        put32(row, f, F_IP_LEN, (uint32_t)tl);
        put8(row, f, F_PROTO, (uint8_t)proto);
        put8(row, f, F_FRAG, (uint8_t)((is4 && (fr & 0x2000) ? FRAG_MF : 0) | (lat ? FRAG_LATER : 0)));
        if (!icmp && !lat) {
            put16(row, f, F_SPORT, (uint16_t)be16(g3));
            put16(row, f, F_DPORT, (uint16_t)be16(g3 + 2));
        }
        int k_nnt = nnt && tcp, k_nns = nns && tcp, k_nntnns = nntnns && tcp;
        int k_mss = mss_only && tcp, k_lsyn = lsyn && tcp, k_wsyn = wsyn && tcp;
        int syn_opts = k_lsyn || k_wsyn;
        if (tcp) {
            put32(row, f, F_SEQ, be32(g3 + 4));
            put32(row, f, F_ACK, be32(g3 + 8));
            put16(row, f, F_FLAGS, (uint16_t)(be16(g3 + 12) & 0x01FF));
            put16(row, f, F_WIN, (uint16_t)be16(g3 + 14));
        }
        if (k_mss || syn_opts)
            put16(row, f, F_MSS, (uint16_t)be16(g3 + 22));
        if (k_lsyn)
            put8(row, f, F_WSCALE, (uint8_t)(g3[39] < 127 ? g3[39] : 127));
        if (k_wsyn)
            put8(row, f, F_WSCALE, (uint8_t)(g3[27] < 127 ? g3[27] : 127));
        put8(row, f, F_SACKOK, (uint8_t)syn_opts);
        int has_ts = k_nnt || k_nntnns;
        put8(row, f, F_HAS_TS, (uint8_t)(has_ts || k_lsyn));
        if (has_ts) {
            put32(row, f, F_TSVAL, be32(g3 + 24));
            put32(row, f, F_TSECR, be32(g3 + 28));
        }
        if (k_lsyn) {
            put32(row, f, F_TSVAL, be32(g3 + 28));
            put32(row, f, F_TSECR, be32(g3 + 32));
        }
        int layout = k_nnt | (k_nns << 1) | (k_nntnns << 2) | (k_mss << 3) | (k_lsyn << 4) | (k_wsyn << 5);
        put64(row, f, F_OPTSIG, sigs[layout]);
        if (icmp) {
            int16_t it = g3[0];
            if (f[F_ICMP_TYPE] >= 0)
                memcpy(row + f[F_ICMP_TYPE], &it, 2);
            put8(row, f, F_ICMP_CODE, g3[1]);
        }
        if (echo) {
            put16(row, f, F_ICMP_ID, (uint16_t)be16(g3 + 4));
            put16(row, f, F_ICMP_SEQ, (uint16_t)be16(g3 + 6));
        }
        /* ---- payload */
        int64_t pstart = l4 + hdr;
        int64_t plen = lat ? 0 : ipend - pstart;
        int64_t e = ipend < cl ? ipend : cl;
        int64_t have = lat ? 0 : (e - pstart > 0 ? e - pstart : 0);
        int64_t poff = have > 0 ? o0 + pstart : 0;
        put32(row, f, F_PLEN, (uint32_t)plen);
        put32(row, f, F_PCAPLEN, (uint32_t)have);
        put64(row, f, F_POFF, (uint64_t)poff);
        int64_t hashed = have;
        if (first && proto == 17 && have >= HASH_BYTES) {
            int64_t ulen = (int64_t)be16(g3 + 4) - 8;
            if (ulen > HASH_BYTES)
                hashed = ulen;
        }
        put64(row, f, F_PHASH, hashed > 0 ? payload_hash(&b, poff, hashed) : 0);
        if (have < plen)
            put8(row, f, F_STATUS, TRUNCATED_PAYLOAD);
        if (lat)
            put8(row, f, F_STATUS, FRAGMENT);
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(nq);
done:
    for (int k = 0; k < got; k++)
        PyBuffer_Release(&v[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"rows", fast_rows, METH_VARARGS, rows_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fast",
    "The fast path's decode, compiled (see _fast.c; used by rig.capture.fast).", -1, methods,
};

PyMODINIT_FUNC
PyInit__fast(void)
{
    return PyModule_Create(&module);
}
