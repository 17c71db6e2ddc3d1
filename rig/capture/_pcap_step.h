/* One step of the pcap record walk, shared by _walk.c (the walk) and _fast.c (the walk
 * that scans as it goes): the rule of where the next record is, in one place. */
#ifndef RIG_PCAP_STEP_H
#define RIG_PCAP_STEP_H
#include <stdint.h>
#include <string.h>

#ifndef PREFETCH
#define PREFETCH 4096 /* bytes ahead of the record read (_walk.c's header has the figures) */
#endif

/* the 16-byte header of the record at off into h (the four words, byte-swapped if swap);
 * returns the offset of the next record. off + 16 <= len. */
static inline long long pcap_step(const unsigned char *base, long long len, long long off, int swap, uint32_t h[4])
{
    if (PREFETCH && off + PREFETCH < len)
        __builtin_prefetch(base + off + PREFETCH);
    memcpy(h, base + off, 16);
    if (swap) {
        h[0] = __builtin_bswap32(h[0]);
        h[1] = __builtin_bswap32(h[1]);
        h[2] = __builtin_bswap32(h[2]);
        h[3] = __builtin_bswap32(h[3]);
    }
    return off + 16 + (long long)h[2];
}
#endif
