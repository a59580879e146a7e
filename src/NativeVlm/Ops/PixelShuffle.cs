using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// Idefics3's connector pixel shuffle (nvlm_pixel_shuffle_forward): x [n, seq, d] with seq a
    /// square whose side is divisible by scale → [n, seq / scale², d · scale²].
    /// </summary>
    public static Tensor PixelShuffle(Tensor x, int scale)
    {
        const string op = "pixel_shuffle";
        RequireDType(op, "x", x, DType.F32);
        if (x.Rank != 3)
        {
            throw new ArgumentException($"{op}: x must be [n, seq, d], got {x}");
        }
        long n = x.Dim(0), seq = x.Dim(1), d = x.Dim(2);
        long side = (long)Math.Round(Math.Sqrt(seq));
        if (scale <= 0 || side * side != seq || side % scale != 0)
        {
            throw new ArgumentException($"{op}: seq ({seq}) must be a square whose side is divisible by scale ({scale})");
        }
        long s2 = (long)scale * scale;
        Tensor y = Tensor.Empty(x.Context, DType.F32, n, seq / s2, d * s2);
        Native.Check(NativeMethods.nvlm_pixel_shuffle_forward(x.Context.Handle, y.Buffer, x.Buffer, n, seq, d, scale));
        if (ShouldRecord(x))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_pixel_shuffle_backward(x.Context.Handle, GradBuffer(x),
                dy.Buffer, n, seq, d, scale)));
        }
        return y;
    }
}
