using System.Globalization;
using System.Text;
using NativeVlm.Autograd;
using NativeVlm.Tensors;
using Xunit.Sdk;

namespace NativeVlm.Tests;

/// <summary>
/// An elementwise closeness criterion: |got − want| ≤ Atol + Rtol · |want|. Every use states
/// why its numbers are what they are.
/// </summary>
public readonly record struct Tol(double Atol, double Rtol)
{
    /// <summary>Bit-for-bit (data movement only: gathers, shuffles, copies).</summary>
    public static readonly Tol Exact = new(0, 0);

    public double Allowed(double want) => Atol + Rtol * Math.Abs(want);

    public bool Accepts(double got, double want)
    {
        if (double.IsNaN(want) || double.IsNaN(got))
        {
            return double.IsNaN(want) && double.IsNaN(got);
        }
        if (double.IsInfinity(want) || double.IsInfinity(got))
        {
            return got == want;
        }
        return Math.Abs(got - want) <= Allowed(want);
    }

    public override string ToString() => FormattableString.Invariant($"|got − want| ≤ {Atol:G3} + {Rtol:G3}·|want|");
}

/// <summary>A float input of an op under test: its values, shape and whether it is a leaf that wants a gradient.</summary>
public sealed record Arg(string Name, float[] Data, long[] Shape, bool RequiresGrad)
{
    /// <summary>A leaf with RequiresGrad = true: its gradient is checked against finite differences.</summary>
    public static Arg Param(string name, float[] data, params long[] shape) => new(name, data, shape, true);

    /// <summary>An input without gradient (e.g. inv_freq): fed to op and reference, not differentiated.</summary>
    public static Arg Const(string name, float[] data, params long[] shape) => new(name, data, shape, false);

    /// <summary>A leaf with values uniform in [lo, hi).</summary>
    public static Arg Random(string name, Random rng, long[] shape, double lo = -1, double hi = 1) =>
        Param(name, Rand.Uniform(rng, (int)shape.Aggregate(1L, (p, v) => p * v), lo, hi), shape);
}

/// <summary>Seeded random inputs.</summary>
public static class Rand
{
    /// <summary>Uniform floats in [lo, hi); never all zeros.</summary>
    public static float[] Uniform(Random rng, int count, double lo = -1, double hi = 1)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = (float)(lo + (hi - lo) * rng.NextDouble());
        }
        if (count > 0 && values.All(v => v == 0))
        {
            throw new InvalidOperationException("random input came out all zeros; pick another seed");
        }
        return values;
    }

    public static int[] Ints(Random rng, int count, int lo, int hiExclusive) =>
        Enumerable.Range(0, count).Select(_ => rng.Next(lo, hiExclusive)).ToArray();

    public static double[] ToDouble(this float[] values) => values.Select(v => (double)v).ToArray();
}

/// <summary>Element-by-element comparison with a failure message that names the op, the index and the values.</summary>
public static class Compare
{
    public static void AllClose(string what, IReadOnlyList<double> got, IReadOnlyList<double> want, long[] shape, Tol tol)
    {
        if (got.Count != want.Count)
        {
            throw new XunitException($"{what}: got {got.Count} values, expected {want.Count}");
        }
        var bad = new List<int>();
        int worst = -1;
        double worstExcess = double.NegativeInfinity;
        for (int i = 0; i < got.Count; i++)
        {
            if (tol.Accepts(got[i], want[i]))
            {
                continue;
            }
            bad.Add(i);
            double excess = double.IsFinite(got[i]) && double.IsFinite(want[i])
                ? Math.Abs(got[i] - want[i]) / tol.Allowed(want[i])
                : double.PositiveInfinity;
            if (excess > worstExcess || worst < 0)
            {
                worstExcess = excess;
                worst = i;
            }
        }
        if (bad.Count == 0)
        {
            return;
        }
        var message = new StringBuilder();
        message.Append(CultureInfo.InvariantCulture,
            $"{what}: {bad.Count} of {got.Count} values violate {tol} (shape [{string.Join(", ", shape)}])\n");
        message.Append("  worst ").Append(Describe(worst, got, want, shape, tol)).Append('\n');
        foreach (int i in bad.Take(8))
        {
            message.Append("  ").Append(Describe(i, got, want, shape, tol)).Append('\n');
        }
        throw new XunitException(message.ToString());
    }

    public static void AllClose(string what, IReadOnlyList<float> got, IReadOnlyList<double> want, long[] shape, Tol tol) =>
        AllClose(what, got.Select(v => (double)v).ToArray(), want, shape, tol);

    private static string Describe(int i, IReadOnlyList<double> got, IReadOnlyList<double> want, long[] shape, Tol tol) =>
        FormattableString.Invariant(
            $"[{Index(i, shape)}] got {got[i]:G9}, want {want[i]:G9}, |diff| {Math.Abs(got[i] - want[i]):G3} > allowed {tol.Allowed(want[i]):G3}");

    /// <summary>Flat index → "i, j, k" in the given shape.</summary>
    public static string Index(long flat, long[] shape)
    {
        if (shape.Length == 0)
        {
            return flat.ToString(CultureInfo.InvariantCulture);
        }
        var index = new long[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            long extent = Math.Max(1, shape[d]);
            index[d] = flat % extent;
            flat /= extent;
        }
        return string.Join(", ", index);
    }
}

/// <summary>
/// The shared forward + backward check of one op on one backend:
/// <list type="number">
/// <item>upload the inputs as leaves (RequiresGrad as each <see cref="Arg"/> says) and run the op on a
///   <see cref="Tape"/>; compare its output (shape and values) with the double reference;</item>
/// <item>back-propagate a random gradOutput with <see cref="Tape.Backward(Tensor, Tensor)"/> and compare
///   every leaf's Grad with central finite differences of Σ gradOutput · reference(x);</item>
/// <item>run forward and backward once more without clearing the leaves' gradients: since every native
///   backward adds into its outputs (d += …), each Grad must now be twice the finite difference.</item>
/// </list>
/// </summary>
public static class OpCheck
{
    /// <summary>
    /// Runs the check. <paramref name="op"/> receives the leaves in the order of
    /// <paramref name="inputs"/>; <paramref name="reference"/> receives their values in double,
    /// in the same order, and returns the output flat. <paramref name="fdStep"/> is the central
    /// difference step h (see <see cref="Reference.FiniteDifferenceGradient"/>).
    /// </summary>
    public static void Run(Context ctx, string label, Arg[] inputs, long[] outputShape,
        Func<Tensor[], Tensor> op, Func<double[][], double[]> reference, Tol forward, Tol backward, double fdStep,
        int seed = 12345)
    {
        label = $"{label} on {ctx}";
        var leaves = new List<Tensor>();
        try
        {
            foreach (Arg arg in inputs)
            {
                Tensor leaf = Tensor.FromArray(ctx, arg.Data, arg.Shape);
                leaf.RequiresGrad = arg.RequiresGrad;
                leaves.Add(leaf);
            }
            double[][] x = inputs.Select(a => a.Data.ToDouble()).ToArray();
            double[] want = reference(x);
            float[] gradOutput = Rand.Uniform(new Random(seed), want.Length);
            double[] gradOutputD = gradOutput.ToDouble();
            bool anyGrad = inputs.Any(a => a.RequiresGrad);

            // 1. forward, then one backward.
            using (var tape = new Tape())
            {
                Tensor y = op([.. leaves]);
                if (!y.Shape.SequenceEqual(outputShape))
                {
                    throw new XunitException(
                        $"{label}: output shape [{string.Join(", ", y.Shape.ToArray())}], expected [{string.Join(", ", outputShape)}]");
                }
                Compare.AllClose($"{label}: forward", y.ToFloatArray(), want, outputShape, forward);
                if (!anyGrad)
                {
                    return;
                }
                Tensor g = tape.Own(Tensor.FromArray(ctx, gradOutput, outputShape));
                tape.Backward(y, g);
            }

            var expected = new double[inputs.Length][];
            for (int i = 0; i < inputs.Length; i++)
            {
                if (!inputs[i].RequiresGrad)
                {
                    continue;
                }
                expected[i] = Reference.FiniteDifferenceGradient(reference, x, gradOutputD, i, fdStep);
                Compare.AllClose($"{label}: backward d{inputs[i].Name} vs finite differences",
                    GradOf(leaves[i], label, inputs[i].Name), expected[i], inputs[i].Shape, backward);
            }

            // 2. the same again: gradients must accumulate (every native backward adds into d*).
            using (var tape = new Tape())
            {
                Tensor y = op([.. leaves]);
                Tensor g = tape.Own(Tensor.FromArray(ctx, gradOutput, outputShape));
                tape.Backward(y, g);
            }
            var doubled = new Tol(2 * backward.Atol, backward.Rtol); // two sums of the same rounded terms
            for (int i = 0; i < inputs.Length; i++)
            {
                if (inputs[i].RequiresGrad)
                {
                    Compare.AllClose($"{label}: second backward must add to the first: d{inputs[i].Name} vs 2 × finite differences",
                        GradOf(leaves[i], label, inputs[i].Name), expected[i].Select(v => 2 * v).ToArray(), inputs[i].Shape, doubled);
                }
            }
        }
        finally
        {
            foreach (Tensor leaf in leaves)
            {
                leaf.Dispose();
            }
        }
    }

    private static float[] GradOf(Tensor leaf, string label, string name) =>
        leaf.Grad?.ToFloatArray()
        ?? throw new XunitException($"{label}: backward left no gradient in {name} although it requires grad");

    /// <summary>Hands an auxiliary tensor (ids, positions, masks) to the current tape so it lives as long as the op's backward.</summary>
    public static Tensor Own(Tensor t) =>
        (TensorScope.Current ?? throw new InvalidOperationException("no scope is open")).Own(t);

    public static long[] Shape(params long[] dims) => dims;
}

/// <summary>bf16 rounding on the host, independent of the native cast: what BF16 math and bf16 storage must reproduce.</summary>
public static class Bf16
{
    public static float[] Rounded(float[] values) => values.Select(Rounded).ToArray();

    // Round to nearest, ties to even, on the bits (the inputs here are finite).
    public static float Rounded(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        bits = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
        return BitConverter.UInt32BitsToSingle(bits);
    }
}
