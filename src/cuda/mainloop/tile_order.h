/* The order the fused kernels take their output tiles in: the sm80 kernel's CTA t does
 * tile t, the sm90 kernel's persistent CTAs (clusters) step through cluster tiles.
 *
 * Tiles go in bands of `band` tiles along M, M fastest inside a band: the CTAs running at
 * one time share W tiles and x rows through L2. The band is a runtime value for sm90 (8
 * M-blocks, in cluster tiles of 1 or 2 M-blocks: LGH_SM90_BAND / cluster_m) and a constant
 * for sm80 (LGH_SM80_BAND), which inlining folds into the arithmetic.
 *
 * Plain C as well as CUDA, so that the host's unit test (tests/test_straddle_geometry.c)
 * checks the same code the kernels run. */
#ifndef LGH_MAINLOOP_TILE_ORDER_H
#define LGH_MAINLOOP_TILE_ORDER_H

#if defined(__CUDACC__)
#define LGH_HD __host__ __device__ __forceinline__
#else
#define LGH_HD static inline
#endif

LGH_HD int lgh_min_int(int a, int b) { return a < b ? a : b; }
LGH_HD int lgh_max_int(int a, int b) { return a > b ? a : b; }

/* Tile t -> (tile along M, tile along N) of an m_tiles x n_tiles grid. */
LGH_HD void lgh_tile_coords(int t, int m_tiles, int n_tiles, int band, int *mt, int *nt)
{
    const int band_tiles = band * n_tiles;
    const int b = t / band_tiles;
    const int first = b * band;
    const int rows = lgh_min_int(band, m_tiles - first); /* the last band may be shorter */
    const int in = t - b * band_tiles;
    *mt = first + in % rows;
    *nt = in / rows;
}

/* Tile (mt, nt) -> its index t (the inverse of lgh_tile_coords). */
LGH_HD int lgh_tile_index(int mt, int nt, int m_tiles, int n_tiles, int band)
{
    const int b = mt / band, first = b * band;
    const int rows = lgh_min_int(band, m_tiles - first);
    return b * band * n_tiles + nt * rows + (mt - first);
}

#endif
