using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// The patches of SigLIP's patch embedding conv (kernel = stride = patch, nvlm_patchify_forward):
    /// pixels [n, c, h, w] with h and w multiples of patch → [n, (h / patch) · (w / patch), c · patch²],
    /// patches in row-major order of the grid, each in (channel, ky, kx) order, so that
    /// <c>Linear(Patchify(pixels, p), convWeight.Reshape(hidden, c · p · p), convBias)</c> is the conv
    /// with its output flattened to [n, patches, hidden].
    /// </summary>
    public static Tensor Patchify(Tensor pixels, int patch)
    {
        const string op = "patchify";
        RequireDType(op, "pixels", pixels, DType.F32);
        if (pixels.Rank != 4)
        {
            throw new ArgumentException($"{op}: pixels must be [n, channels, height, width], got {pixels}");
        }
        long n = pixels.Dim(0), channels = pixels.Dim(1), height = pixels.Dim(2), width = pixels.Dim(3);
        if (patch <= 0)
        {
            throw new ArgumentException($"{op}: patch ({patch}) must be positive");
        }
        if (channels <= 0)
        {
            throw new ArgumentException($"{op}: channels ({channels}) must be positive, got {pixels}");
        }
        if (height <= 0 || height % patch != 0)
        {
            throw new ArgumentException($"{op}: height ({height}) must be a positive multiple of patch ({patch})");
        }
        if (width <= 0 || width % patch != 0)
        {
            throw new ArgumentException($"{op}: width ({width}) must be a positive multiple of patch ({patch})");
        }

        Tensor y = Tensor.Empty(pixels.Context, DType.F32, n, height / patch * (width / patch), channels * patch * patch);
        Native.Check(NativeMethods.nvlm_patchify_forward(pixels.Context.Handle, y.Buffer, pixels.Buffer, n, channels,
            height, width, patch));
        if (ShouldRecord(pixels))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_patchify_backward(pixels.Context.Handle,
                GradBuffer(pixels), dy.Buffer, n, channels, height, width, patch)));
        }
        return y;
    }
}
