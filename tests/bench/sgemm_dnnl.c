/*
 * LD_PRELOAD shim for `deno task bench:train`: Debian's python3-torch calls
 * the BLAS `sgemm_` of whatever libblas.so.3 is installed, by default the
 * slow reference BLAS. This routes those calls to oneDNN's dnnl_sgemm
 * (libdnnl.so.2, which Debian's torch depends on), so PyTorch runs its
 * matrix products about as fast as the MKL/oneDNN wheels users install.
 *
 *   gcc -O2 -shared -fPIC sgemm_dnnl.c -o libsgemm_dnnl.so /usr/lib/x86_64-linux-gnu/libdnnl.so.2
 *
 * BLAS is column-major and dnnl_sgemm row-major: C = A·B column-major is
 * Cᵀ = Bᵀ·Aᵀ row-major, so the operands and their sizes swap.
 */
#include <stdint.h>

extern int dnnl_sgemm(char transa, char transb, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, const float *B,
                      int64_t ldb, float beta, float *C, int64_t ldc);

void sgemm_(const char *transa, const char *transb, const int *m, const int *n,
            const int *k, const float *alpha, const float *a, const int *lda,
            const float *b, const int *ldb, const float *beta, float *c,
            const int *ldc) {
  dnnl_sgemm(*transb, *transa, *n, *m, *k, *alpha, b, *ldb, a, *lda, *beta, c,
             *ldc);
}
