// Host shim: compiles upcc's emitted CUDA C kernels as plain C++ for the CPU, so that tests
// without a GPU can run them against the CPU engine. The grid runs as two nested loops; the
// kernels use no shared memory, warps or synchronisation, so each thread is independent.
#pragma once
#include <math.h>

struct upcc_dim3 {
    unsigned x, y, z;
};
static thread_local upcc_dim3 blockIdx, threadIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline

typedef void (*upcc_kernel)(double*, double*, double*, double*, double*, double*, double*,
                            double*, const long long*, long long, long long);

// Runs `kernel` over `total` threads in blocks of 256, as a CUDA launch would.
extern "C" void upcc_host_launch(upcc_kernel kernel, double* const* p, const long long* idx,
                                 long long cols, long long total) {
    const unsigned block = 256;
    const long long blocks = (total + block - 1) / block;
    blockDim.x = block;
    gridDim.x = (unsigned)blocks;
    for (long long b = 0; b < blocks; ++b) {
        blockIdx.x = (unsigned)b;
        for (unsigned t = 0; t < block; ++t) {
            threadIdx.x = t;
            kernel(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], idx, cols, total);
        }
    }
}
