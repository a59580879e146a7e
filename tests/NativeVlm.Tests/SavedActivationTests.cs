using NativeVlm.Autograd;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// Context.SavedActivationDType = BF16: an activation that only the tape still reads is kept as its bf16
/// rounding (half the bytes) and the backward reads that rounding back in f32; whatever any backward reads
/// exactly (weights, statistics) stays f32, and the forward never sees a rounded value.
/// </summary>
public class SavedActivationTests
{
    private static Tensor Leaf(Context ctx, float[] values, params long[] shape)
    {
        Tensor t = Tensor.FromArray(ctx, values, shape);
        t.RequiresGrad = true;
        return t;
    }

    [Fact]
    public void A_new_context_saves_f32_and_bf16_mixed_precision_switches_math_and_storage_together()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        Assert.Equal(DType.F32, ctx.SavedActivationDType);
        ctx.SetBf16MixedPrecision(true);
        Assert.Equal((MathMode.Bf16, DType.BF16), (ctx.MathMode, ctx.SavedActivationDType));
        ctx.SetBf16MixedPrecision(false);
        Assert.Equal((MathMode.F32, DType.F32), (ctx.MathMode, ctx.SavedActivationDType));
        var error = Assert.Throws<ArgumentException>(() => ctx.SavedActivationDType = DType.U8);
        Assert.Contains("U8", error.Message);
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void An_activation_only_the_tape_reads_is_kept_as_bf16_and_its_backward_reads_the_rounding(string backend)
    {
        const int n = 96;
        float[] values = Rand.Uniform(new Random(31), n, -3, 3);
        float[] grad;
        using (Context ctx = Backends.Open(backend))
        {
            ctx.SavedActivationDType = DType.BF16;
            using Tensor a = Leaf(ctx, values, n);
            using (var tape = new Tape())
            {
                long before = ctx.Memory.LiveBytes;
                Tensor output;
                using (var scope = new TensorScope())
                {
                    // The sum a + a is read by gelu's backward only.
                    output = scope.Keep(Ops.Gelu(Ops.Residual(a, a)));
                }
                // Left: the output in f32 and the sum narrowed to bf16, half its f32 bytes.
                Assert.Equal(before + a.ByteCount + a.ByteCount / 2, ctx.Memory.LiveBytes);
                tape.Backward(Ops.Sum(output));
                grad = a.Grad!.ToFloatArray();
            }
        }

        // Reference: gelu's backward at the rounded sum, stored in f32; a receives it twice (a + a).
        float[] expected;
        using (Context ctx = Backends.Open(backend))
        {
            using Tensor sum = Leaf(ctx, Bf16.Rounded(values.Select(v => v + v).ToArray()), n);
            using (var tape = new Tape())
            {
                tape.Backward(Ops.Sum(Ops.Gelu(sum)));
            }
            expected = sum.Grad!.ToFloatArray().Select(g => g + g).ToArray();
        }
        Assert.Equal(expected, grad);
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void A_norm_input_is_narrowed_while_its_weight_and_statistics_stay_f32(string backend)
    {
        const int rows = 8, width = 48;
        var rng = new Random(32);
        using Context ctx = Backends.Open(backend);
        ctx.SavedActivationDType = DType.BF16;
        using Tensor x = Leaf(ctx, Rand.Uniform(rng, rows * width), rows, width);
        using Tensor weight = Leaf(ctx, Rand.Uniform(rng, width, 0.5, 1.5), width);
        using var tape = new Tape();
        long before = ctx.Memory.LiveBytes;
        Tensor output;
        using (var scope = new TensorScope())
        {
            output = scope.Keep(Ops.RmsNorm(Ops.Residual(x, x), weight, 1e-6f));
        }
        // Left: the output (f32), the norm's input as bf16 and its per-row 1/rms statistic in f32.
        Assert.Equal(before + x.ByteCount + x.ByteCount / 2 + rows * sizeof(float), ctx.Memory.LiveBytes);
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void A_storage_that_one_backward_reads_exactly_stays_f32(string backend)
    {
        const int n = 16;
        var rng = new Random(33);
        using Context ctx = Backends.Open(backend);
        ctx.SavedActivationDType = DType.BF16;
        using Tensor m = Leaf(ctx, Rand.Uniform(rng, n * n), n, n);
        using Tensor x = Leaf(ctx, Rand.Uniform(rng, 3 * n), 3, n);
        using var tape = new Tape();
        long before = ctx.Memory.LiveBytes;
        Tensor y, z;
        using (var scope = new TensorScope())
        {
            Tensor shared = Ops.Residual(m, m);
            y = scope.Keep(Ops.Gelu(shared));        // reads shared as an activation
            z = scope.Keep(Ops.Linear(x, shared));   // reads it as a weight, exactly
        }
        // Left: y, z and shared, all in f32.
        Assert.Equal(before + 2 * m.ByteCount + z.ByteCount, ctx.Memory.LiveBytes);
    }

    [Fact]
    public void A_freed_storage_is_refused_by_name_and_a_widened_one_is_freed_with_its_last_hold()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        ctx.SavedActivationDType = DType.BF16;
        using Tensor a = Leaf(ctx, Rand.Uniform(new Random(35), 32), 32);
        long baseline = ctx.Memory.LiveBytes;
        Tensor sum;
        using (var tape = new Tape())
        {
            Tensor output;
            using (var scope = new TensorScope())
            {
                sum = Ops.Residual(a, a);
                output = scope.Keep(Ops.Gelu(sum));
            }
            tape.Backward(Ops.Sum(output));
        }
        a.Grad!.Dispose();
        a.Grad = null;
        // The sum, narrowed and then widened by gelu's backward, went with the tape like everything else.
        Assert.Equal(baseline, ctx.Memory.LiveBytes);
        var error = Assert.Throws<ObjectDisposedException>(() => sum.ToFloatArray());
        Assert.Contains("storage was freed", error.Message);
    }

    [Fact]
    public void In_bf16_math_a_linear_input_kept_as_bf16_changes_no_number()
    {
        // BF16 math rounds the linear's input to bf16 before its weight gradient multiplies it, so keeping
        // that input rounded loses nothing: storage alone must not change a bit.
        const int rows = 12, kIn = 40, nOut = 24;
        var rng = new Random(34);
        float[] x = Rand.Uniform(rng, rows * kIn), w = Rand.Uniform(rng, nOut * kIn);
        (float[] y, float[] dx, float[] dw, long narrowedBytes) f32 = LinearStep(DType.F32, x, w, rows, kIn, nOut);
        (float[] y, float[] dx, float[] dw, long narrowedBytes) bf16 = LinearStep(DType.BF16, x, w, rows, kIn, nOut);
        Assert.Equal(f32.y, bf16.y);
        Assert.Equal(f32.dx, bf16.dx);
        Assert.Equal(f32.dw, bf16.dw);
        Assert.Equal(0, f32.narrowedBytes);
        Assert.Equal(rows * kIn * sizeof(float) / 2, bf16.narrowedBytes);
    }

    /// <summary>y = gelu(x)·wᵀ in BF16 math, backward from Σy; narrowedBytes: what keeping gelu(x) saved.</summary>
    private static (float[] Y, float[] Dx, float[] Dw, long NarrowedBytes) LinearStep(DType saved, float[] x, float[] w,
        int rows, int kIn, int nOut)
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        ctx.MathMode = MathMode.Bf16;
        ctx.SavedActivationDType = saved;
        using Tensor tx = Leaf(ctx, x, rows, kIn);
        using Tensor tw = Leaf(ctx, w, nOut, kIn);
        using var tape = new Tape();
        long before = ctx.Memory.LiveBytes;
        Tensor y;
        using (var scope = new TensorScope())
        {
            y = scope.Keep(Ops.Linear(Ops.Gelu(tx), tw));
        }
        // f32 storage leaves y and gelu(x) (the linear's input); bf16 storage keeps the latter at half size.
        long narrowed = before + y.ByteCount + tx.ByteCount - ctx.Memory.LiveBytes;
        float[] output = y.ToFloatArray();
        tape.Backward(Ops.Sum(y));
        return (output, tx.Grad!.ToFloatArray(), tw.Grad!.ToFloatArray(), narrowed);
    }
}
