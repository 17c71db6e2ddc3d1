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

#include "_buffers.h"
#include "_pcap_step.h"

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
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8); /* one load (the byte loop below was 0.1 s of a 4M-record scan) */
    return v;
#else
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = (v << 8) | p[k];
    return v;
#endif
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

/* One record as the fast path reads it: whether it is claimed (``ok``) and what its row
 * is written from. Shared by rows() and scan(): one rule for both. */
typedef struct {
    unsigned char g2[40], g3[44];
    int ok, is4, later, first, proto, tcp, icmp, echo, has;
    int nnt, nns, nntnns, mss_only, lsyn, wsyn;
    uint16_t vlan;
    uint32_t fr;
    int64_t l4, ipend, tl, hdr;
} Parsed;

/* the claim of the record at o0 (caplen cl, wirelen wl, link type t); an ICMP error's
 * quoted record goes to rec (QUOTED_DTYPE, qsize bytes) and sets has */
static inline void parse(const Buf *b, int64_t o0, int64_t cl, int64_t wl, int64_t t, const Luts *L,
                         const int64_t *qf, Py_ssize_t qsize, unsigned char *rec, Parsed *p)
{
    unsigned char g1[20];
    unsigned char *g2 = p->g2, *g3 = p->g3;
    /* ---- link layer */
    window(b, o0, g1, 20);
    int eth = t == 1, vl = eth && be16(g1 + 12) == 0x8100, sll = t == 113, sll2 = t == 276;
    int ver0 = g1[0] >> 4;
    int64_t raw_et = ver0 == 4 ? 0x0800 : ver0 == 6 ? 0x86DD : 0;
    if ((t == 228 && ver0 != 4) || (t == 229 && ver0 != 6))
        raw_et = 0;
    int64_t et = vl ? be16(g1 + 16) : eth ? be16(g1 + 12) : sll ? be16(g1 + 14) : sll2 ? be16(g1) : raw_et;
    int64_t l3 = vl ? 18 : eth ? 14 : sll ? 16 : sll2 ? 20 : 0;
    p->vlan = vl ? (uint16_t)(be16(g1 + 14) & 0x0FFF) : 0;
    int ok = et == 0x0800 || et == 0x86DD;
    /* ---- IP header */
    window(b, o0 + l3, g2, 40);
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
    window(b, o0 + l4, g3, 44);
    int64_t doff = (int64_t)(g3[12] >> 4) * 4;
    int64_t hdr = is_tcp ? doff : 8;
    ok = ok && cl >= l4 + hdr && room >= hdr;
    uint32_t o5 = be32(g3 + 20), o6 = be32(g3 + 24), o7 = be32(g3 + 28), o8 = be32(g3 + 32),
             o9 = be32(g3 + 36), s10 = be16(g3 + 20);
    p->nnt = doff == 32 && o5 == 0x0101080A;
    p->nns = doff == 32 && o5 == 0x0101050A;
    p->nntnns = doff == 44 && o5 == 0x0101080A && o8 == 0x0101050A;
    p->mss_only = doff == 24 && s10 == 0x0204;
    p->lsyn = doff == 40 && s10 == 0x0204 && o6 == 0x0402080A && (o9 & 0xFFFFFF00u) == 0x01030300;
    p->wsyn = doff == 32 && s10 == 0x0204 && (o6 & 0xFFFFFF00u) == 0x01030300 && o7 == 0x01010402;
    int tcp_ok = doff == 20 || p->nnt || p->nns || p->nntnns || p->mss_only || p->lsyn || p->wsyn;
    ok = ok && (is_tcp ? tcp_ok : (is_udp || is_icmp));
    int echo = 0, has = 0;
    if (ok && is_icmp) {
        echo = is4 ? L->echo4[g3[0]] : L->echo6[g3[0]];
        int err = is4 ? L->err4[g3[0]] : L->err6[g3[0]];
        if (err) {
            int64_t e = ipend < cl ? ipend : cl;
            if (!quote(b, g3, is4, o0 + l4 + 8, e - l4 - 8, L, qf, qsize, rec, &has))
                ok = 0;
        }
    }
    p->ok = ok || ok_later;
    p->has = p->ok && has;
    p->is4 = is4;
    p->later = later;
    p->first = first;
    p->proto = proto;
    p->tcp = is_tcp;
    p->icmp = is_icmp;
    p->echo = echo;
    p->fr = fr;
    p->l4 = l4;
    p->ipend = ipend;
    p->tl = tl;
    p->hdr = hdr;
}

/* a claimed record's addresses as two little-endian u64 words each (the table's form) */
static inline void addr_words(const Parsed *p, uint64_t *sw0, uint64_t *sw1, uint64_t *dw0, uint64_t *dw1)
{
    if (p->is4) {
        *sw0 = *dw0 = 0;
        *sw1 = ((uint64_t)le32(p->g2 + 12) << 32) | 0xFFFF0000u;
        *dw1 = ((uint64_t)le32(p->g2 + 16) << 32) | 0xFFFF0000u;
    } else {
        *sw0 = le64(p->g2 + 8);
        *sw1 = le64(p->g2 + 16);
        *dw0 = le64(p->g2 + 24);
        *dw1 = le64(p->g2 + 32);
    }
}

/* a claimed record's payload: its length, the bytes the capture holds, their offset, its hash */
static inline void payload(const Buf *b, const Parsed *p, int64_t o0, int64_t cl, int64_t *plen, int64_t *have,
                           int64_t *poff, uint64_t *phash)
{
    int64_t pstart = p->l4 + p->hdr;
    *plen = p->later ? 0 : p->ipend - pstart;
    int64_t e = p->ipend < cl ? p->ipend : cl;
    *have = p->later ? 0 : (e - pstart > 0 ? e - pstart : 0);
    *poff = *have > 0 ? o0 + pstart : 0;
    int64_t hashed = *have;
    if (p->first && p->proto == 17 && *have >= HASH_BYTES) {
        int64_t ulen = (int64_t)be16(p->g3 + 4) - 8;
        if (ulen > HASH_BYTES)
            hashed = ulen;
    }
    *phash = hashed > 0 ? payload_hash(b, *poff, hashed) : 0;
}

static inline void prefetch(const Buf *b, const int64_t *off, Py_ssize_t i, Py_ssize_t n)
{
    if (AHEAD && i + AHEAD < n && off[i + AHEAD] >= 0 && off[i + AHEAD] + 128 <= b->size) {
        __builtin_prefetch(b->base + off[i + AHEAD]);
        __builtin_prefetch(b->base + off[i + AHEAD] + 64);
    }
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
    int flags[NBUF];
    for (int k = 0; k < NBUF; k++)
        flags[k] = PyBUF_C_CONTIGUOUS | (k == 6 || k >= 11 ? PyBUF_WRITABLE : 0);
    if (get_buffers(o, v, flags, NBUF) < 0)
        return NULL;
    PyObject *result = NULL;
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
        Parsed p;
        int64_t o0 = off[i], cl = caplen[i];
        prefetch(&b, off, i, n);
        claimed[i] = 0;
        unsigned char *rec = quoted + nq * qsize;
        parse(&b, o0, cl, wirelen[i], lt[i], &L, qf, qsize, rec, &p);
        if (!p.ok)
            continue;
        claimed[i] = 1;
        if (p.has) {
            uint32_t r = (uint32_t)idx[i];
            memcpy(rec + qf[Q_ROW], &r, 4);
            nq++;
        }
        const unsigned char *g2 = p.g2, *g3 = p.g3;
        unsigned char *row = table + idx[i] * itemsize;
        int is4 = p.is4, tcp = p.tcp, icmp = p.icmp, lat = p.later;
        uint32_t fr = p.fr;
        put16(row, f, F_VLAN, p.vlan);
        put8(row, f, F_IPVER, is4 ? 4 : 6);
        uint64_t sw0, sw1, dw0, dw1;
        addr_words(&p, &sw0, &sw1, &dw0, &dw1);
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
        put32(row, f, F_IP_LEN, (uint32_t)p.tl);
        put8(row, f, F_PROTO, (uint8_t)p.proto);
        put8(row, f, F_FRAG, (uint8_t)((is4 && (fr & 0x2000) ? FRAG_MF : 0) | (lat ? FRAG_LATER : 0)));
        if (!icmp && !lat) {
            put16(row, f, F_SPORT, (uint16_t)be16(g3));
            put16(row, f, F_DPORT, (uint16_t)be16(g3 + 2));
        }
        int k_nnt = p.nnt && tcp, k_nns = p.nns && tcp, k_nntnns = p.nntnns && tcp;
        int k_mss = p.mss_only && tcp, k_lsyn = p.lsyn && tcp, k_wsyn = p.wsyn && tcp;
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
        if (p.echo) {
            put16(row, f, F_ICMP_ID, (uint16_t)be16(g3 + 4));
            put16(row, f, F_ICMP_SEQ, (uint16_t)be16(g3 + 6));
        }
        /* ---- payload */
        int64_t plen, have, poff;
        uint64_t phash;
        payload(&b, &p, o0, cl, &plen, &have, &poff, &phash);
        put32(row, f, F_PLEN, (uint32_t)plen);
        put32(row, f, F_PCAPLEN, (uint32_t)have);
        put64(row, f, F_POFF, (uint64_t)poff);
        put64(row, f, F_PHASH, phash);
        if (have < plen)
            put8(row, f, F_STATUS, TRUNCATED_PAYLOAD);
        if (lat)
            put8(row, f, F_STATUS, FRAGMENT);
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(nq);
done:
    release_buffers(v, NBUF);
    return result;
}

/* ---- scan: which records of a busy capture may be relevant (focus.py) */

#define TAG 56
#define LOW ((1ULL << TAG) - 1)
#define MIX 0x9E3779B97F4A7C15ULL
#define SEEN_SHIFT (64 - 20)
enum { K_SYN_ISN = 1, K_SYN_TS, K_SYNACK_ISN, K_ECHO_REQ, K_ECHO_REP, K_UDP }; /* focus.K_* */

static inline uint64_t tagged(uint64_t kind, uint64_t v) { return (kind << TAG) | (v & LOW); }
static inline uint64_t akey(uint64_t w0, uint64_t w1) { return w1 ^ (w0 * MIX); } /* addresses._key */

static int member(const uint64_t *sorted, Py_ssize_t n, uint64_t x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && sorted[lo] == x;
}

/* a bit per (key * MIX) >> 48 of a sorted key set: most keys looked for are in no set
 * (a busy capture's other traffic), and one bit in 8 KB (L1) rules them out before the
 * binary search */
#define SIEVE_BITS 16
typedef struct {
    const uint64_t *keys;
    Py_ssize_t n;
    uint64_t bits[(1 << SIEVE_BITS) / 64];
} Set;

static void set_init(Set *s, const uint64_t *keys, Py_ssize_t n)
{
    s->keys = keys;
    s->n = n;
    memset(s->bits, 0, sizeof s->bits);
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t h = (keys[i] * MIX) >> (64 - SIEVE_BITS);
        s->bits[h >> 6] |= 1ULL << (h & 63);
    }
}

static inline int in_set(const Set *s, uint64_t x)
{
    uint64_t h = (x * MIX) >> (64 - SIEVE_BITS);
    return (s->bits[h >> 6] >> (h & 63)) & 1 ? member(s->keys, s->n, x) : 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static inline void see(unsigned char *seen, uint64_t key) { seen[(key * MIX) >> SEEN_SHIFT] = 1; }

PyDoc_STRVAR(walkscan_doc,
"walkscan(buf, start, stop, swap, maxcap, lt, luts, qfields, out, back, peers, idx, offs, hdrs, seen, counts)\n"
"-> (n, off, hard, max_sub, ncand)\n\n"
"The pcap walk of _walk.pcap (start, stop, swap, maxcap as there; lt the file's link type)\n"
"that reads each record as it goes (parse(), as rows() does) and keeps only those\n"
"focus.read_focused may keep: every record the fast path does not claim; every claimed\n"
"one from or to a peer (peers: sorted u8, those known; and those this segment's anchors\n"
"make, by focus._keys' rules on out and back, focus.Focus's sorted keys), or an ICMP\n"
"error quoting one; the first and the last claimed record that is not a later fragment.\n"
"Their record numbers in the segment go to idx (int64), their offsets to offs (int64),\n"
"their headers to hdrs (4 x u32 each); room for as many as the segment may hold. Sets in\n"
"seen (2^20 u1) the bits of the claimed records' addresses and quoted addresses\n"
"(focus._seen); adds to counts (int64, by Undecoded) the statuses of the claimed records\n"
"left out. Returns the records walked, the offset after the last, hard (as _walk.pcap),\n"
"the largest sub-second field met and how many records were kept.");

#define SBUF 11

typedef struct {
    uint64_t k[4]; /* source, destination, quoted source, quoted destination keys */
    unsigned char flag;
} Seen1;

static PyObject *
fast_walkscan(PyObject *self, PyObject *args)
{
    Py_buffer in;
    Py_ssize_t start, stop;
    int swap;
    unsigned long long maxcap;
    long long lt;
    PyObject *o[SBUF];
    Py_buffer v[SBUF];
    memset(v, 0, sizeof v);
    if (!PyArg_ParseTuple(args, "y*nnpKLOOOOOOOOOOO", &in, &start, &stop, &swap, &maxcap, &lt, &o[0], &o[1], &o[2],
                          &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9], &o[10]))
        return NULL;
    /* luts 0, qfields 1, out 2, back 3, peers 4; writable: idx 5, offs 6, hdrs 7, seen 8, counts 9; lt-fast 10 */
    int flags[SBUF];
    for (int k = 0; k < SBUF; k++)
        flags[k] = PyBUF_C_CONTIGUOUS | (k >= 5 && k <= 9 ? PyBUF_WRITABLE : 0);
    if (get_buffers(o, v, flags, SBUF) < 0) {
        PyBuffer_Release(&in);
        return NULL;
    }
    PyObject *result = NULL;
    Seen1 *rec1 = NULL;
    uint64_t *newp = NULL;
    Set *sets = NULL;
    Py_ssize_t room = v[5].len / 8;
    if (v[0].len != 5 * 256 || v[1].len != Q_COUNT * 8 || v[2].len % 8 || v[3].len % 8 || v[4].len % 8
        || v[6].len / 8 < room || v[7].len / 16 < room || v[8].len != (1 << 20) || v[9].len < 8 * (FRAGMENT + 1)
        || v[10].len != 1) {
        PyErr_SetString(PyExc_ValueError, "walkscan: arrays of the wrong size");
        goto done;
    }
    if (start < 0 || stop + 16 > in.len) {
        PyErr_SetString(PyExc_ValueError, "start before the buffer, or stop leaves no room for a header");
        goto done;
    }
    const unsigned char *lu = v[0].buf;
    Luts L = {lu, lu + 256, lu + 512, lu + 768, lu + 1024};
    const int64_t *qf = v[1].buf;
    const uint64_t *fout = v[2].buf, *fback = v[3].buf, *peers = v[4].buf;
    Py_ssize_t nout = v[2].len / 8, nback = v[3].len / 8, npeers = v[4].len / 8;
    int64_t *idx = v[5].buf, *offs = v[6].buf;
    uint32_t *hdrs = v[7].buf;
    unsigned char *seen = v[8].buf;
    int64_t *counts = v[9].buf;
    int fast = *(const unsigned char *)v[10].buf;
    Buf b = {(const unsigned char *)in.buf, in.len};
    Py_ssize_t cap = 1 << 16, np_cap = npeers + 1024;
    rec1 = PyMem_RawMalloc((size_t)cap * sizeof(Seen1));
    newp = PyMem_RawMalloc((size_t)np_cap * sizeof(uint64_t));
    sets = PyMem_RawMalloc(3 * sizeof(Set));
    if (rec1 == NULL || newp == NULL || sets == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Set *S_out = sets, *S_back = sets + 1, *S_peer = sets + 2;
    Py_ssize_t n = 0, ncand = 0, np_ = 0, first_valid = -1, last_valid = -1;
    long long off = start;
    int hard = 0, oom = 0;
    uint32_t max_sub = 0;
    enum { CLAIMED = 1, QUOTES = 2 };
    Py_BEGIN_ALLOW_THREADS
    set_init(S_out, fout, nout);
    set_init(S_back, fback, nback);
    unsigned char rec[256];
    Py_ssize_t qsize = (Py_ssize_t)sizeof rec;
    while (off <= stop && n < room) {
        uint32_t h[4];
        if (off + PREFETCH + 192 < b.size) { /* the lines after the one pcap_step fetches: the headers parse() reads */
            __builtin_prefetch(b.base + off + PREFETCH + 64);
            __builtin_prefetch(b.base + off + PREFETCH + 128);
        }
        long long next = pcap_step(b.base, b.size, off, swap, h);
        if (n == cap || np_ + 2 > np_cap) {
            Seen1 *r2 = n == cap ? PyMem_RawRealloc(rec1, (size_t)(cap *= 2) * sizeof(Seen1)) : rec1;
            uint64_t *p2 = np_ + 2 > np_cap ? PyMem_RawRealloc(newp, (size_t)(np_cap *= 2) * sizeof(uint64_t)) : newp;
            if (r2 != NULL)
                rec1 = r2;
            if (p2 != NULL)
                newp = p2;
            if (r2 == NULL || p2 == NULL) {
                oom = 1;
                break;
            }
        }
        if (h[1] > max_sub)
            max_sub = h[1];
        Seen1 *r = rec1 + n;
        r->flag = 0;
        Parsed p;
        int64_t o0 = off + 16, cl = h[2];
        /* the record just read is in the cache: decoding it now costs no second trip to memory */
        if (fast)
            parse(&b, o0, cl, h[3], lt, &L, qf, qsize, rec, &p);
        if (fast && p.ok) {
            uint64_t sw0, sw1, dw0, dw1;
            addr_words(&p, &sw0, &sw1, &dw0, &dw1);
            uint64_t *k = r->k;
            k[0] = akey(sw0, sw1);
            k[1] = akey(dw0, dw1);
            see(seen, k[0]);
            see(seen, k[1]);
            r->flag = CLAIMED;
            if (p.has) {
                uint64_t q[4];
                memcpy(q, rec + qf[Q_SRC], 16);
                memcpy(q + 2, rec + qf[Q_DST], 16);
                k[2] = akey(q[0], q[1]);
                k[3] = akey(q[2], q[3]);
                see(seen, k[2]);
                see(seen, k[3]);
                r->flag |= QUOTES;
            }
            int64_t plen, have, poff;
            uint64_t phash;
            payload(&b, &p, o0, cl, &plen, &have, &poff, &phash);
            r->flag |= (unsigned char)((p.later ? FRAGMENT : have < plen ? TRUNCATED_PAYLOAD : 0) << 3);
            if (!p.later) {
                if (first_valid < 0)
                    first_valid = n;
                last_valid = n;
                /* anchors (focus._keys): a key of the small capture's makes its address a peer */
                const unsigned char *g3 = p.g3;
                if (p.tcp) {
                    int fl = be16(g3 + 12) & 0x12;
                    if (fl == 0x02) {
                        if (in_set(S_out, tagged(K_SYN_ISN, be32(g3 + 4))))
                            newp[np_++] = k[0];
                        int has_ts = p.nnt || p.nntnns;
                        uint32_t tsval = p.lsyn ? be32(g3 + 28) : has_ts ? be32(g3 + 24) : 0;
                        if ((has_ts || p.lsyn) && tsval && in_set(S_out, tagged(K_SYN_TS, tsval)))
                            newp[np_++] = k[0];
                    } else if (fl == 0x12 && in_set(S_back, tagged(K_SYNACK_ISN, be32(g3 + 4)))) {
                        newp[np_++] = k[1];
                    }
                } else if (p.icmp && phash) {
                    int it = g3[0];
                    uint64_t echo = phash * MIX ^ (uint64_t)(p.echo ? be16(g3 + 6) : 0);
                    if ((it == 8 || it == 128) && in_set(S_out, tagged(K_ECHO_REQ, echo)))
                        newp[np_++] = k[0];
                    if ((it == 0 || it == 129) && in_set(S_back, tagged(K_ECHO_REP, echo)))
                        newp[np_++] = k[1];
                } else if (p.proto == 17 && phash) {
                    if (in_set(S_out, tagged(K_UDP, phash)))
                        newp[np_++] = k[0];
                    if (in_set(S_back, tagged(K_UDP, phash)))
                        newp[np_++] = k[1];
                }
            }
        }
        offs[n] = off; /* (the kept ones are moved down below) */
        memcpy(hdrs + 4 * n, h, 16);
        n++;
        off = next;
        if (h[2] > maxcap) {
            hard = 1;
            break;
        }
    }
    if (!oom) {
        /* the peers: those known and those anchored here */
        uint64_t *all = PyMem_RawRealloc(newp, (size_t)(np_ + npeers + 1) * sizeof(uint64_t));
        if (all == NULL) {
            oom = 1;
        } else {
            newp = all;
            memcpy(newp + np_, peers, (size_t)npeers * sizeof(uint64_t));
            np_ += npeers;
            qsort(newp, (size_t)np_, sizeof(uint64_t), cmp_u64);
            set_init(S_peer, newp, np_);
            for (Py_ssize_t i = 0; i < n; i++) {
                const Seen1 *r = rec1 + i;
                unsigned char fl = r->flag;
                const uint64_t *k = r->k;
                int keep = !(fl & CLAIMED) || i == first_valid || i == last_valid || in_set(S_peer, k[0])
                           || in_set(S_peer, k[1])
                           || ((fl & QUOTES) && (in_set(S_peer, k[2]) || in_set(S_peer, k[3])));
                if (!keep) {
                    counts[fl >> 3]++;
                    continue;
                }
                idx[ncand] = i;
                offs[ncand] = offs[i];
                memmove(hdrs + 4 * ncand, hdrs + 4 * i, 16);
                ncand++;
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (oom) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_BuildValue("nLOkn", n, off, hard ? Py_True : Py_False, (unsigned long)max_sub, ncand);
done:
    PyMem_RawFree(rec1);
    PyMem_RawFree(newp);
    PyMem_RawFree(sets);
    release_buffers(v, SBUF);
    PyBuffer_Release(&in);
    return result;
}

/* ---- gather: a column of a packet table at some rows (analysis.keys.take) */

PyDoc_STRVAR(gather_doc,
"gather(col, rows, out) -> bool\n\n"
"out[i] = col[rows[i]] for a column of a structured table (a strided view: each row's\n"
"item one stride apart, its bytes contiguous): rows int64, out C-contiguous with room for\n"
"len(rows) items. False, with out unspecified, where a row is out of 0..len(col)-1 or\n"
"col is not such a view (the caller then lets numpy do it).");

#define GATHER_AHEAD 16

static PyObject *
fast_gather(PyObject *self, PyObject *args)
{
    PyObject *obj[3]; /* col, rows, out */
    if (!PyArg_ParseTuple(args, "OOO", &obj[0], &obj[1], &obj[2]))
        return NULL;
    Py_buffer b[3];
    const int flags[3] = {PyBUF_STRIDED_RO, PyBUF_C_CONTIGUOUS, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE};
    if (get_buffers(obj, b, flags, 3) < 0)
        return NULL;
    Py_buffer c = b[0], r = b[1], o = b[2];
    int ok = c.ndim >= 1 && c.strides != NULL && c.itemsize > 0 && r.len % 8 == 0;
    Py_ssize_t item = c.itemsize; /* the bytes of one row's item: inner dimensions contiguous */
    for (int d = c.ndim - 1; ok && d >= 1; d--) {
        ok = c.strides[d] == item;
        item *= c.shape[d];
    }
    Py_ssize_t n = ok ? c.shape[0] : 0, stride = ok ? c.strides[0] : 0, m = r.len / 8;
    ok = ok && stride >= item && o.len >= m * item;
    if (ok) {
        const char *base = (const char *)c.buf;
        const int64_t *rows = (const int64_t *)r.buf;
        char *out = (char *)o.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < m; i++) {
            if (rows[i] < 0 || rows[i] >= n) {
                ok = 0;
                break;
            }
        }
        if (ok) {
            for (Py_ssize_t i = 0; i < m; i++) {
                if (i + GATHER_AHEAD < m)
                    __builtin_prefetch(base + rows[i + GATHER_AHEAD] * stride);
                memcpy(out + i * item, base + rows[i] * stride, (size_t)item);
            }
        }
        Py_END_ALLOW_THREADS
    }
    release_buffers(b, 3);
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"gather", fast_gather, METH_VARARGS, gather_doc},
    {"rows", fast_rows, METH_VARARGS, rows_doc},
    {"walkscan", fast_walkscan, METH_VARARGS, walkscan_doc},
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
