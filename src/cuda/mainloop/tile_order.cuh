// The order the fused kernels take their output tiles in: the sm80 kernel's CTA t does
// tile t, the sm90 kernel's persistent CTAs (clusters) step through cluster tiles.
//
// Tiles go in bands of `band` tiles along M, M fastest inside a band: the CTAs running at
// one time share W tiles and x rows through L2. The band is a runtime value for sm90 (8
// M-blocks, in cluster tiles of 1 or 2 M-blocks: LGH_SM90_BAND / cluster_m) and a constant
// for sm80 (LGH_SM80_BAND), which inlining folds into the arithmetic.
#pragma once

// Tile t -> (tile along M, tile along N) of an m_tiles x n_tiles grid.
__device__ __forceinline__ void lgh_tile_coords(int t, int m_tiles, int n_tiles, int band, int *mt, int *nt)
{
    const int band_tiles = band * n_tiles;
    const int b = t / band_tiles;
    const int first = b * band;
    const int rows = min(band, m_tiles - first); // the last band may be shorter
    const int in = t - b * band_tiles;
    *mt = first + in % rows;
    *nt = in / rows;
}
