// Loads and stores of y, γ and β for the group-norm pass, in "units": 16 bytes on the
// vector path (4 float32 or 8 bfloat16 / float16 elements), one element on the scalar
// path (unaligned pointers, leading dimensions or group sizes).
//
// lgh_norm_io<T, VECTOR> gives
//   N                 elements per unit
//   U                 what a thread keeps of one unit of y in registers (16-bit data stays
//                     packed, so a thread holds the same number of 32-bit registers for
//                     every dtype and 16-bit groups twice as wide fit)
//   load / store      a unit of y (plain loads: y is written by the same kernel)
//   unpack / pack     U <-> float[N]
//   load_param        a unit of γ or β as float[N] (read-only path)
// Conversions round to nearest even (bf16, fp16), as the host helpers in cpu/convert.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

// The 32-bit word i (0..3, a compile-time constant after unrolling) of a 16-byte unit.
__device__ __forceinline__ unsigned lgh_word(const uint4 &u, int i)
{
    return i == 0 ? u.x : i == 1 ? u.y : i == 2 ? u.z : u.w;
}

// One element's bits <-> float, per dtype.
template <typename T> struct lgh_elem;

template <> struct lgh_elem<float> {
    __device__ __forceinline__ static float load(const float *p) { return *p; }
    __device__ __forceinline__ static float ldg(const float *p) { return __ldg(p); }
    __device__ __forceinline__ static void store(float *p, float v) { *p = v; }
};

template <> struct lgh_elem<__nv_bfloat16> {
    __device__ __forceinline__ static float bits(unsigned short h) { return __uint_as_float((unsigned)h << 16); }
    __device__ __forceinline__ static unsigned short round(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
    __device__ __forceinline__ static float load(const __nv_bfloat16 *p) { return bits(*reinterpret_cast<const unsigned short *>(p)); }
    __device__ __forceinline__ static float ldg(const __nv_bfloat16 *p) { return bits(__ldg(reinterpret_cast<const unsigned short *>(p))); }
    __device__ __forceinline__ static void store(__nv_bfloat16 *p, float v) { *reinterpret_cast<unsigned short *>(p) = round(v); }
};

template <> struct lgh_elem<__half> {
    __device__ __forceinline__ static float bits(unsigned short h) { return __half2float(__ushort_as_half(h)); }
    __device__ __forceinline__ static unsigned short round(float v) { return __half_as_ushort(__float2half_rn(v)); }
    __device__ __forceinline__ static float load(const __half *p) { return bits(*reinterpret_cast<const unsigned short *>(p)); }
    __device__ __forceinline__ static float ldg(const __half *p) { return bits(__ldg(reinterpret_cast<const unsigned short *>(p))); }
    __device__ __forceinline__ static void store(__half *p, float v) { *reinterpret_cast<unsigned short *>(p) = round(v); }
};

template <typename T, bool VECTOR> struct lgh_norm_io;

// Scalar path: one element per unit, kept as float.
template <typename T> struct lgh_norm_io<T, false> {
    static constexpr int N = 1;
    using U = float;
    __device__ __forceinline__ static U load(const T *p) { return lgh_elem<T>::load(p); }
    __device__ __forceinline__ static void store(T *p, U u) { lgh_elem<T>::store(p, u); }
    __device__ __forceinline__ static void unpack(U u, float (&f)[N]) { f[0] = u; }
    __device__ __forceinline__ static U pack(const float (&f)[N]) { return f[0]; }
    __device__ __forceinline__ static void load_param(const T *p, float (&f)[N]) { f[0] = lgh_elem<T>::ldg(p); }
};

// Vector path: 16-byte units, packed.
template <typename T> struct lgh_norm_io<T, true> {
    static constexpr int N = 16 / (int)sizeof(T);
    using U = uint4;
    __device__ __forceinline__ static U load(const T *p) { return *reinterpret_cast<const uint4 *>(p); }
    // __stwb: a plain uint4 assignment was split into four 4-byte stores by the compiler.
    __device__ __forceinline__ static void store(T *p, U u) { __stwb(reinterpret_cast<uint4 *>(p), u); }

    __device__ __forceinline__ static void unpack(U u, float (&f)[N])
    {
        if constexpr (sizeof(T) == 4) {
#pragma unroll
            for (int i = 0; i < 4; ++i) f[i] = __uint_as_float(lgh_word(u, i));
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const unsigned w = lgh_word(u, i);
                f[2 * i] = lgh_elem<T>::bits((unsigned short)(w & 0xffffu));
                f[2 * i + 1] = lgh_elem<T>::bits((unsigned short)(w >> 16));
            }
        }
    }

    // Built with make_uint4 in one piece, so the store stays one 16-byte access.
    __device__ __forceinline__ static U pack(const float (&f)[N])
    {
        if constexpr (sizeof(T) == 4) {
            return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
                              __float_as_uint(f[3]));
        } else {
            unsigned w[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const unsigned lo = lgh_elem<T>::round(f[2 * i]);
                const unsigned hi = lgh_elem<T>::round(f[2 * i + 1]);
                w[i] = lo | (hi << 16);
            }
            return make_uint4(w[0], w[1], w[2], w[3]);
        }
    }

    __device__ __forceinline__ static void load_param(const T *p, float (&f)[N])
    {
        unpack(__ldg(reinterpret_cast<const uint4 *>(p)), f);
    }
};

// A float32 source normalised into T (a pre-norm kept in float32 so that values beyond
// float16's range survive until normalisation, or split-K partial products): loads from
// float, and per unit the sum of the source's slices in order plus the bias (add, add_param).
// The scalar path: one element per unit.
template <typename T> struct lgh_norm_io_f32_src {
    static constexpr int N = 1;
    using U = float;
    __device__ __forceinline__ static U load(const float *p) { return *p; }
    __device__ __forceinline__ static void store(T *p, U u) { lgh_elem<T>::store(p, u); }
    __device__ __forceinline__ static void unpack(U u, float (&f)[N]) { f[0] = u; }
    __device__ __forceinline__ static U pack(const float (&f)[N]) { return f[0]; }
    __device__ __forceinline__ static void load_param(const T *p, float (&f)[N]) { f[0] = lgh_elem<T>::ldg(p); }
    __device__ __forceinline__ static void add(U &u, U v) { u += v; }
    __device__ __forceinline__ static void add_param(U &u, const T *p) { u += lgh_elem<T>::ldg(p); }
};

// The vector path: units of 4 elements, 16-byte loads of the source; stores of 4 T (16
// bytes of float32, 8 of 16-bit data) and loads of γ, β and the bias alike. The sums are
// the scalar path's, element by element, so both paths give the same bits.
template <typename T> struct lgh_norm_io_f32_src_vec {
    static constexpr int N = 4;
    using U = float4;
    __device__ __forceinline__ static U load(const float *p) { return *reinterpret_cast<const float4 *>(p); }
    __device__ __forceinline__ static void store(T *p, U u)
    {
        if constexpr (sizeof(T) == 4) {
            __stwb(reinterpret_cast<float4 *>(p), u);
        } else {
            const unsigned w0 = lgh_elem<T>::round(u.x) | ((unsigned)lgh_elem<T>::round(u.y) << 16);
            const unsigned w1 = lgh_elem<T>::round(u.z) | ((unsigned)lgh_elem<T>::round(u.w) << 16);
            __stwb(reinterpret_cast<uint2 *>(p), make_uint2(w0, w1));
        }
    }
    __device__ __forceinline__ static void unpack(U u, float (&f)[N]) { f[0] = u.x, f[1] = u.y, f[2] = u.z, f[3] = u.w; }
    __device__ __forceinline__ static U pack(const float (&f)[N]) { return make_float4(f[0], f[1], f[2], f[3]); }
    __device__ __forceinline__ static void load_param(const T *p, float (&f)[N])
    {
        if constexpr (sizeof(T) == 4) {
            const float4 v = __ldg(reinterpret_cast<const float4 *>(p));
            f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w;
        } else {
            const uint2 v = __ldg(reinterpret_cast<const uint2 *>(p));
            f[0] = lgh_elem<T>::bits((unsigned short)(v.x & 0xffffu));
            f[1] = lgh_elem<T>::bits((unsigned short)(v.x >> 16));
            f[2] = lgh_elem<T>::bits((unsigned short)(v.y & 0xffffu));
            f[3] = lgh_elem<T>::bits((unsigned short)(v.y >> 16));
        }
    }
    __device__ __forceinline__ static void add(U &u, U v) { u.x += v.x, u.y += v.y, u.z += v.z, u.w += v.w; }
    __device__ __forceinline__ static void add_param(U &u, const T *p)
    {
        float f[N];
        load_param(p, f);
        u.x += f[0], u.y += f[1], u.z += f[2], u.w += f[3];
    }
};
