/* Straddle mode's geometry (the sm90 kernel's groups of any size, kernel_sm90.cuh,
 * lgh_sm90_straddle_epilogue): which groups a tile of `bn` columns holds, which of them
 * cross its edges, and which tiles hold the rest of those. Plain C as well as CUDA, so that
 * the host's unit test (tests/test_straddle_geometry.c) checks the same code the kernel
 * runs. Columns are absolute; groups are [g gs, (g + 1) gs); n is a multiple of gs. */
#ifndef LGH_EPILOGUE_STRADDLE_GEOMETRY_H
#define LGH_EPILOGUE_STRADDLE_GEOMETRY_H

#include "mainloop/tile_order.h"

typedef struct lgh_straddle_tile {
    int n0, ncols;          /* the tile's first column and its width inside [0, n) */
    int g_first, g_last;    /* the groups it holds a piece of */
    int has_left;           /* g_first began in an earlier tile */
    int has_right;          /* g_last goes on in a later tile */
    int u_lo, u_hi;         /* the tiles holding pieces of its edge groups (nt itself included) */
} lgh_straddle_tile;

/* The first and last tile (along N) holding a piece of group g. */
LGH_HD int lgh_straddle_first_tile(int g, int gs, int bn) { return g * gs / bn; }
LGH_HD int lgh_straddle_last_tile(int g, int gs, int bn) { return ((g + 1) * gs - 1) / bn; }

LGH_HD lgh_straddle_tile lgh_straddle_of(int nt, int n, int gs, int bn)
{
    lgh_straddle_tile t;
    t.n0 = nt * bn;
    t.ncols = lgh_min_int(bn, n - t.n0);
    t.g_first = t.n0 / gs;
    t.g_last = (t.n0 + t.ncols - 1) / gs;
    t.has_left = t.g_first * gs < t.n0;
    t.has_right = (t.g_last + 1) * gs > t.n0 + t.ncols;
    t.u_lo = t.has_left ? lgh_straddle_first_tile(t.g_first, gs, bn) : nt;
    t.u_hi = t.has_right ? lgh_straddle_last_tile(t.g_last, gs, bn) : nt;
    return t;
}

/* Group g's columns inside tile u, [*lo, *hi) relative to the tile's first column; returns
 * their count (0 if none). */
LGH_HD int lgh_straddle_piece(int g, int gs, int bn, int u, int *lo, int *hi)
{
    const int a = lgh_max_int(g * gs, u * bn), b = lgh_min_int((g + 1) * gs, (u + 1) * bn);
    *lo = a - u * bn;
    *hi = b - u * bn;
    return b > a ? b - a : 0;
}

#endif
