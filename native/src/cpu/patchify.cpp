/*
 * SigLIP's patch embedding conv (kernel = stride = patch, no padding) as data movement:
 * pixels (n, channels, height, width) → out (n, (height/patch)·(width/patch), channels·patch²),
 * output row py·(width/patch) + px holding pixels[c, py·patch + ky, px·patch + kx] at
 * (c·patch + ky)·patch + kx, the order of a conv weight (hidden, channels, patch, patch) flattened.
 * The patches tile the image, so each pixel has exactly one destination and backward is the same
 * map read the other way, added into dpixels.
 */
#include "ops.h"

namespace nvlm::cpu {

namespace {

// Visits the map as (pixels offset, out offset) pairs, each a run of `patch` floats along one image
// row (kx = 0 .. patch−1), one output patch per iteration.
template <class Move>
void for_each_patch_row(int64_t n, int64_t channels, int64_t height, int64_t width, int64_t patch, Move move) {
    const int64_t grid_width = width / patch;
    const int64_t patches = height / patch * grid_width;
    const int64_t patch_size = channels * patch * patch;
#pragma omp parallel for schedule(static)
    for (int64_t token = 0; token < n * patches; token++) {
        const int64_t b = token / patches, py = token % patches / grid_width, px = token % grid_width;
        for (int64_t c = 0; c < channels; c++)
            for (int64_t ky = 0; ky < patch; ky++)
                move(((b * channels + c) * height + py * patch + ky) * width + px * patch,
                     token * patch_size + (c * patch + ky) * patch);
    }
}

}  // namespace

void patchify_forward(float* out, const float* pixels, int64_t n, int64_t channels, int64_t height, int64_t width,
                      int64_t patch) {
    for_each_patch_row(n, channels, height, width, patch, [&](int64_t pixels_offset, int64_t out_offset) {
        for (int64_t kx = 0; kx < patch; kx++) out[out_offset + kx] = pixels[pixels_offset + kx];
    });
}

void patchify_backward(float* dpixels, const float* dout, int64_t n, int64_t channels, int64_t height, int64_t width,
                       int64_t patch) {
    for_each_patch_row(n, channels, height, width, patch, [&](int64_t pixels_offset, int64_t out_offset) {
        for (int64_t kx = 0; kx < patch; kx++) dpixels[pixels_offset + kx] += dout[out_offset + kx];
    });
}

}  // namespace nvlm::cpu
