/*
 * test_straddle_geometry: the index arithmetic of the sm90 kernel's straddle mode (groups
 * of any size, src/cuda/epilogue/straddle_geometry.h) and of the fused kernels' tile order
 * (src/cuda/mainloop/tile_order.h), on the host: the headers are the ones the kernels
 * compile, so a wrong piece, edge or neighbour shows here before it can hang or corrupt a
 * GPU run.
 *
 *   test_straddle_geometry        (exit 0: every check passed, 1: a failure)
 *
 * Tile order: lgh_tile_index inverts lgh_tile_coords for every tile of grids up to 40 x 60
 * in bands of 1, 3, 8 (the sm90 kernel's) and 16 (measured faster for 2-byte data), and
 * N-neighbours k tiles apart lie at most k band heights apart in tile order (the straddle
 * epilogue's deadlock-freedom needs that distance below the grid).
 * Straddle geometry, for 256-column tiles and group sizes that do not tile them (1 .. 511
 * in steps, odd ones included) times G = 1 .. 40: each tile's pieces partition its columns
 * in order; its edge flags say exactly whether its first group began before it and its
 * last goes on after it; every group's pieces add up to the group size and lie inside its
 * first .. last tile; [u_lo, u_hi] holds every tile of both edge groups and spans at most 5
 * tiles; and each neighbour holding an edge group holds it as its own opposite edge (the
 * side the epilogue reads: an earlier tile's right edge, a later tile's left).
 */
#include <stdio.h>

#include "epilogue/straddle_geometry.h"

static int failures;

#define CHECK(cond, ...)                                                                                           \
    do {                                                                                                           \
        if (!(cond)) {                                                                                             \
            if (++failures <= 20) {                                                                                \
                printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                        \
                printf(__VA_ARGS__);                                                                               \
                printf("\n");                                                                                      \
            }                                                                                                      \
        }                                                                                                          \
    } while (0)

static void check_tile_order(void)
{
    static const int bands[] = {1, 3, 8, 16};
    for (int bi = 0; bi < 4; ++bi)
        for (int mtiles = 1; mtiles <= 40; ++mtiles)
            for (int ntiles = 1; ntiles <= 60; ntiles += 1 + ntiles / 8) {
                const int band = bands[bi];
                for (int t = 0; t < mtiles * ntiles; ++t) {
                    int mt, nt;
                    lgh_tile_coords(t, mtiles, ntiles, band, &mt, &nt);
                    CHECK(mt >= 0 && mt < mtiles && nt >= 0 && nt < ntiles, "tile %d -> (%d, %d) outside %dx%d", t,
                          mt, nt, mtiles, ntiles);
                    CHECK(lgh_tile_index(mt, nt, mtiles, ntiles, band) == t, "tile %d -> (%d, %d) -> %d", t, mt, nt,
                          lgh_tile_index(mt, nt, mtiles, ntiles, band));
                    for (int k = 1; k <= 2 && nt + k < ntiles; ++k) {
                        const int d = lgh_tile_index(mt, nt + k, mtiles, ntiles, band) - t;
                        CHECK(d > 0 && d <= k * band, "neighbour %d to the right of tile %d is %d tiles away (band %d)",
                              k, t, d, band);
                    }
                }
            }
}

static int tiles_evenly(int gs) { return gs <= 256 ? (gs & (gs - 1)) == 0 : gs % 256 == 0; }

static void check_straddle(int gs, int groups)
{
    const int bn = 256, n = gs * groups, ntiles = (n + bn - 1) / bn;
    for (int nt = 0; nt < ntiles; ++nt) {
        const lgh_straddle_tile t = lgh_straddle_of(nt, n, gs, bn);
        CHECK(t.n0 == nt * bn && t.ncols > 0 && t.ncols <= bn && t.n0 + t.ncols <= n, "gs %d n %d tile %d: columns",
              gs, n, nt);
        /* the pieces partition the tile's columns, in order */
        int next = 0;
        for (int g = t.g_first; g <= t.g_last; ++g) {
            int lo, hi;
            const int cnt = lgh_straddle_piece(g, gs, bn, nt, &lo, &hi);
            CHECK(cnt > 0 && lo == next && hi - lo == cnt, "gs %d n %d tile %d group %d: piece [%d, %d) after %d", gs,
                  n, nt, g, lo, hi, next);
            next = hi;
        }
        CHECK(next == t.ncols, "gs %d n %d tile %d: pieces end at %d of %d", gs, n, nt, next, t.ncols);
        CHECK(t.has_left == (t.g_first * gs < t.n0) && t.has_right == ((t.g_last + 1) * gs > t.n0 + t.ncols),
              "gs %d n %d tile %d: edge flags", gs, n, nt);
        CHECK(!(nt == 0 && t.has_left) && !(nt == ntiles - 1 && t.has_right), "gs %d n %d tile %d: edge at an end",
              gs, n, nt);
        CHECK(t.u_lo <= nt && nt <= t.u_hi && t.u_hi - t.u_lo <= 4, "gs %d n %d tile %d: neighbours [%d, %d]", gs, n,
              nt, t.u_lo, t.u_hi);
        /* each edge group: its other tiles lie in [u_lo, u_hi] and hold it as their opposite edge */
        for (int side = 0; side < 2; ++side) {
            if (!(side == 0 ? t.has_left : t.has_right)) continue;
            const int g = side == 0 ? t.g_first : t.g_last;
            const int ua = lgh_straddle_first_tile(g, gs, bn), ub = lgh_straddle_last_tile(g, gs, bn);
            CHECK(t.u_lo <= ua && ub <= t.u_hi, "gs %d n %d tile %d: group %d's tiles [%d, %d] outside [%d, %d]", gs,
                  n, nt, g, ua, ub, t.u_lo, t.u_hi);
            for (int u = ua; u <= ub; ++u) {
                if (u == nt) continue;
                const lgh_straddle_tile o = lgh_straddle_of(u, n, gs, bn);
                if (u < nt)
                    CHECK(o.has_right && o.g_last == g, "gs %d n %d: tile %d is not group %d's right edge", gs, n, u, g);
                else
                    CHECK(o.has_left && o.g_first == g, "gs %d n %d: tile %d is not group %d's left edge", gs, n, u, g);
            }
        }
    }
    /* every group's pieces add up to the group, inside its first .. last tile */
    for (int g = 0; g < groups; ++g) {
        int sum = 0;
        for (int u = 0; u < ntiles; ++u) {
            int lo, hi;
            const int cnt = lgh_straddle_piece(g, gs, bn, u, &lo, &hi);
            const int inside = u >= lgh_straddle_first_tile(g, gs, bn) && u <= lgh_straddle_last_tile(g, gs, bn);
            CHECK(inside ? cnt > 0 : cnt == 0, "gs %d n %d group %d: tile %d holds %d columns", gs, n, g, u, cnt);
            sum += cnt;
        }
        CHECK(sum == gs, "gs %d n %d group %d: pieces add up to %d", gs, n, g, sum);
    }
}

int main(void)
{
    check_tile_order();
    int shapes = 0;
    for (int gs = 1; gs < 512; gs += gs < 64 ? 1 : 7) {
        if (tiles_evenly(gs)) continue;
        for (int groups = 1; groups <= 40; ++groups, ++shapes) check_straddle(gs, groups);
    }
    check_straddle(344, 32); /* the LLaMA-style N = 11008, G = 32 */
    if (failures) {
        printf("test_straddle_geometry: %d failures\n", failures);
        return 1;
    }
    printf("test_straddle_geometry: tile order and %d straddle shapes passed\n", shapes + 1);
    return 0;
}
