using NativeVlm.Autograd;
using NativeVlm.Interop;
using NativeVlm.Nn;
using NativeVlm.Quantization;
using NativeVlm.Tensors;

namespace NativeVlm.Adapters;

/// <summary>
/// One module's adapter as PEFT v0.13.2's lora.Linear computes it, with x' = dropout(x) (the
/// identity unless the set is training with p &gt; 0) and s = alpha / r (alpha / √r with rsLoRA):
/// <list type="bullet">
/// <item>LoRA: y = base(x) + s·B·A·x'.</item>
/// <item>DoRA (DoraLinearLayer): y = base(x) + (g − 1)·(x'·Wᵀ) + g·s·B·A·x' with
/// g = m / ‖W + s·B·A‖ per output row. The norm is detached (DoRA paper §4.3), so no gradient flows
/// through it; base(x) holds the bias, which DoRA leaves unscaled.</item>
/// </list>
/// Gradients reach A, B and m (and x); the base weight W stays frozen. Both run as one fused op,
/// <see cref="Ops.Lora"/>, on the base output (nvlm_lora_forward: DoRA's g is its column scale).
/// </summary>
public sealed class LoraAdapter : ILinearAdapter, IDisposable
{
    private readonly LoraAdapterSet _set;

    /// <summary>[out] ones, DoRA only: every forward adds them to g − 1, so they are uploaded once, not per call.</summary>
    private readonly Tensor? _ones;

    internal LoraAdapter(LoraAdapterSet set, Linear module, int rank, float scaling, double dropout, Tensor a, Tensor b, Tensor? magnitude)
    {
        _set = set;
        Module = module;
        Rank = rank;
        Scaling = scaling;
        Dropout = dropout;
        A = a;
        B = b;
        Magnitude = magnitude;
        _ones = magnitude == null ? null : Tensor.FromArray(a.Context, Enumerable.Repeat(1f, (int)module.OutFeatures).ToArray(), module.OutFeatures);
    }

    public Linear Module { get; }

    public int Rank { get; }

    /// <summary>s: alpha / r, or alpha / √r with rsLoRA.</summary>
    public float Scaling { get; }

    /// <summary>Dropout probability on the adapter's input while the set is training.</summary>
    public double Dropout { get; }

    /// <summary>lora_A.weight [r, in].</summary>
    public Tensor A { get; }

    /// <summary>lora_B.weight [out, r].</summary>
    public Tensor B { get; }

    /// <summary>lora_magnitude_vector [out]: DoRA's m; null for LoRA.</summary>
    public Tensor? Magnitude { get; }

    public bool IsEnabled => _set.Enabled;

    /// <summary>The trainable tensors under PEFT's names relative to the module, in PEFT's order.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters =>
        Magnitude == null
            ? [("lora_A.weight", A), ("lora_B.weight", B)]
            : [("lora_A.weight", A), ("lora_B.weight", B), ("lora_magnitude_vector", Magnitude)];

    public bool ScalesProjection => Magnitude != null;

    public Tensor Forward(Tensor x, Tensor baseOutput, Tensor? projection)
    {
        Tensor input = _set.Training && Dropout > 0 ? LoraDropout.Apply(x, Dropout, _set.DropoutRandom) : x;
        if (Magnitude == null)
        {
            return Ops.Lora(baseOutput, null, input, A, B, null, Scaling);
        }

        // DoRA through the fused op: y = base(x) + (g − 1)⊙(x'·Wᵀ) + g⊙s·B·A·x', g = m / ‖W + s·B·A‖ the op's
        // column scale. x'·Wᵀ is the module's projection when x' = x (base(x) itself without a bias); under
        // dropout it is one more base projection of x', without the bias, which DoRA leaves unscaled.
        _ = TensorScope.Current
            ?? throw new InvalidOperationException("a DoRA forward runs inside a TensorScope (or a Tape) that owns its tensors");
        // The detached norm and its reciprocal stay on the device, constants of the tape (the backward of
        // ScaleRows reads the reciprocal); W + s·B·A is never formed.
        (Tensor norm, Tensor? inverseNorm) = WeightNorm(Module.Weight, A, B, Scaling, withInverse: true);
        long outFeatures = Module.OutFeatures;
        // g = 1 + (m − ‖·‖) / ‖·‖ rather than m · (1 / ‖·‖): exactly 1 where m equals the norm (a fresh
        // adapter), as PEFT's m / ‖·‖ is, so that the adapter then leaves the output bit for bit unchanged.
        Tensor gMinusOne = RowOps.ScaleRows(Ops.Residual(Magnitude, Ops.Scale(norm, -1f)).Reshape(outFeatures, 1), inverseNorm!);
        Tensor g = Ops.Residual(gMinusOne.Reshape(outFeatures), _ones!);
        Tensor baseWithoutBias = ReferenceEquals(input, x) && projection != null ? projection : Module.Weight.Forward(input, null);
        return Ops.Lora(baseOutput, baseWithoutBias, input, A, B, g, Scaling);
    }

    /// <summary>
    /// DoRA's initial magnitude as PEFT sets it, ‖W + s·B·A‖ per output row (‖W‖ while B is zero): the
    /// same op as the forward's norm, so a fresh adapter's g is exactly 1. [out], owned by the caller.
    /// </summary>
    internal static Tensor InitialMagnitude(ILinearWeight w, Tensor a, Tensor b, float scaling)
    {
        Tensor magnitude = Tensor.Zeros(a.Context, DType.F32, w.OutFeatures);
        using var scratch = new TensorScope();
        Tensor norm = WeightNorm(w, a, b, scaling, withInverse: false).Norm;
        Native.Check(NativeMethods.nvlm_buffer_copy(magnitude.Buffer, 0, norm.Buffer, 0, norm.ByteCount));
        return magnitude;
    }

    /// <summary>
    /// ‖W + s·B·A‖ per output row [out] of W [out, in] (dense or NF4), A [r, in], B [out, r], and with
    /// <paramref name="withInverse"/> its reciprocal: <see cref="Ops.DoraNorm(Tensor, Tensor, Tensor, float, bool)"/>,
    /// which never forms W + s·B·A. Detached (no gradient flows through the norm); owned by the current scope.
    /// </summary>
    private static (Tensor Norm, Tensor? InverseNorm) WeightNorm(ILinearWeight w, Tensor a, Tensor b, float scaling,
        bool withInverse) => w switch
    {
        DenseWeight dense => Ops.DoraNorm(dense.Tensor, a, b, scaling, withInverse),
        Nf4LinearWeight nf4 => Ops.DoraNorm(nf4.Weight, a, b, scaling, withInverse),
        _ => throw new NotSupportedException($"DoRA's weight norm has no op for a {w.GetType().Name} base weight"),
    };

    /// <summary>
    /// The base weight with the adapter folded in, as PEFT's merge computes it: W + s·B·A for LoRA,
    /// m / ‖W + s·B·A‖ · (W + s·B·A) per row for DoRA. [out, in] row-major, on the host in double
    /// precision rounded once to f32.
    /// </summary>
    public float[] MergedWeight()
    {
        float[] w;
        using (var scope = new TensorScope())
        {
            w = Module.Weight.ToDense().ToFloatArray();
        }
        float[] a = A.ToFloatArray(), b = B.ToFloatArray();
        float[]? m = Magnitude?.ToFloatArray();
        int rows = (int)Module.OutFeatures, cols = (int)Module.InFeatures;
        var merged = new float[w.Length];
        var row = new double[cols];
        for (int i = 0; i < rows; i++)
        {
            double squares = 0;
            for (int j = 0; j < cols; j++)
            {
                double delta = 0;
                for (int k = 0; k < Rank; k++)
                {
                    delta += (double)b[i * Rank + k] * a[k * cols + j];
                }
                row[j] = w[i * cols + j] + Scaling * delta;
                squares += row[j] * row[j];
            }
            double factor = m == null ? 1 : m[i] / Math.Sqrt(squares);
            for (int j = 0; j < cols; j++)
            {
                merged[i * cols + j] = (float)(factor * row[j]);
            }
        }
        return merged;
    }

    public void Dispose()
    {
        A.Dispose();
        B.Dispose();
        Magnitude?.Dispose();
        _ones?.Dispose();
    }
}
