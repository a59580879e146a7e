using NativeVlm.Adapters;
using NativeVlm.Autograd;
using NativeVlm.IO;
using NativeVlm.Nn;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests.Adapters;

/// <summary>
/// LoRA / DoRA / rsLoRA on a single Linear: forward and gradients against PEFT's formulas in
/// double precision, PEFT's initialisation, switching off, dropout, merging, and the file round trip.
/// </summary>
public class LoraAdapterTests
{
    private const string ModuleName = "block.self_attn.q_proj";
    private const int In = 5, Out = 6, Rank = 3, Rows = 4;
    private const double Alpha = 6;

    // fp32 sums of at most In·Rank terms of O(1) values: rounding stays near 1e-6.
    private const double Atol = 1e-5;

    private sealed class Setup : IDisposable
    {
        public Setup(bool hasBias, int seed = 1)
        {
            var rng = new Random(seed);
            W = Rand.Uniform(rng, Out * In);
            Bias = hasBias ? Rand.Uniform(rng, Out) : null;
            X = Rand.Uniform(rng, Rows * In);
            Context = Context.Create(DeviceKind.Cpu);
            Linear = new Linear(ModuleName, new DenseWeight(Tensor.FromArray(Context, (float[])W.Clone(), Out, In)),
                Bias == null ? null : Tensor.FromArray(Context, (float[])Bias.Clone(), Out));
        }

        public float[] W { get; }

        public float[]? Bias { get; }

        /// <summary>[2, 2, in]: leading dimensions as a batch of sequences has them.</summary>
        public float[] X { get; }

        public Context Context { get; }

        public Linear Linear { get; }

        public float[] Forward()
        {
            using var scope = new TensorScope();
            using IDisposable noGrad = Tape.NoGrad();
            return Linear.Forward(scope.Own(Tensor.FromArray(Context, X, 2, 2, In))).ToFloatArray();
        }

        public void Dispose()
        {
            Linear.Dispose();
            Context.Dispose();
        }
    }

    private static LoraConfig Config(bool useDora, bool useRslora = false, LoraInit init = LoraInit.Off, double dropout = 0) =>
        LoraConfig.Create(TargetModules.FromNames("q_proj"), r: Rank, loraAlpha: Alpha, loraDropout: dropout, useDora: useDora,
            useRslora: useRslora, initLoraWeights: init);

    /// <summary>An adapter with the given tensors, through PEFT's file format (as a trained one arrives).</summary>
    private static LoraAdapterSet LoadAdapter(Setup s, TempDirectory dir, LoraConfig config, float[] a, float[] b, float[]? magnitude)
    {
        config.Save(dir.Root);
        var writer = new SafeTensorsWriter();
        string prefix = $"{LoraAdapterSet.KeyPrefix}{ModuleName}.";
        writer.Add(prefix + "lora_A.weight", a, Rank, In);
        writer.Add(prefix + "lora_B.weight", b, Out, Rank);
        if (magnitude != null)
        {
            writer.Add(prefix + "lora_magnitude_vector", magnitude, Out);
        }
        writer.Save(dir.Path(LoraAdapterSet.WeightsFileName));
        return LoraAdapterSet.Load([s.Linear], dir.Root);
    }

    [Theory]
    [InlineData(false, false, false)]
    [InlineData(false, true, false)]
    [InlineData(false, false, true)]
    [InlineData(true, false, false)]
    [InlineData(true, true, false)]
    [InlineData(true, true, true)]
    public void Forward_and_every_gradient_match_peft_formulas_in_double(bool useDora, bool hasBias, bool useRslora)
    {
        using var s = new Setup(hasBias);
        var rng = new Random(2);
        float[] a = Rand.Uniform(rng, Rank * In), b = Rand.Uniform(rng, Out * Rank);
        float[]? m = useDora ? Rand.Uniform(rng, Out, 0.5, 2) : null;
        float[] r = Rand.Uniform(rng, Rows * Out); // d loss / d y
        using var dir = new TempDirectory();
        using LoraAdapterSet set = LoadAdapter(s, dir, Config(useDora, useRslora), a, b, m);
        double scaling = useRslora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

        Reference want = Reference.Compute(s.W, s.Bias, s.X, a, b, m, scaling, r);

        Assert.Equal((float)scaling, set.Adapters[0].Scaling);
        float[] y, dx;
        using (var tape = new Tape())
        {
            Tensor x = tape.Own(Tensor.FromArray(s.Context, s.X, 2, 2, In));
            x.RequiresGrad = true;
            Tensor output = s.Linear.Forward(x);
            y = output.ToFloatArray();
            tape.Backward(output, tape.Own(Tensor.FromArray(s.Context, r, 2, 2, Out)));
            dx = x.Grad!.ToFloatArray();
        }
        LoraAdapter adapter = set.Adapters[0];
        Compare.AllClose("y", y, want.Y, [Rows, Out], new Tol(Atol, 0));
        Compare.AllClose("dx", dx, want.DX, [Rows, In], new Tol(Atol, 0));
        Compare.AllClose("dA", adapter.A.Grad!.ToFloatArray(), want.DA, [Rank, In], new Tol(Atol, 0));
        Compare.AllClose("dB", adapter.B.Grad!.ToFloatArray(), want.DB, [Out, Rank], new Tol(Atol, 0));
        if (useDora)
        {
            Compare.AllClose("dm", adapter.Magnitude!.Grad!.ToFloatArray(), want.DM!, [Out], new Tol(Atol, 0));
        }
        Assert.Null(((DenseWeight)s.Linear.Weight).Tensor.Grad);
    }

    /// <summary>
    /// PEFT's Linear with one adapter, y = base(x) + s·B·A·x (LoRA) or base(x) + (g − 1)·x·Wᵀ +
    /// g·s·B·A·x with g = m / ‖W + s·B·A‖ per row taken as a constant (DoRA), and the gradients of
    /// Σ y·r by hand.
    /// </summary>
    private sealed record Reference(double[] Y, double[] DX, double[] DA, double[] DB, double[]? DM)
    {
        public static Reference Compute(float[] w, float[]? bias, float[] x, float[] a, float[] b, float[]? m, double s, float[] r)
        {
            var g = new double[Out];
            for (int j = 0; j < Out; j++)
            {
                double squares = 0;
                for (int i = 0; i < In; i++)
                {
                    double v = w[j * In + i] + s * Enumerable.Range(0, Rank).Sum(k => (double)b[j * Rank + k] * a[k * In + i]);
                    squares += v * v;
                }
                g[j] = m == null ? 1 : m[j] / Math.Sqrt(squares);
            }
            double gOf(int j) => g[j];
            var y = new double[Rows * Out];
            var dx = new double[Rows * In];
            var da = new double[Rank * In];
            var db = new double[Out * Rank];
            double[]? dm = m == null ? null : new double[Out];
            for (int row = 0; row < Rows; row++)
            {
                double[] h = Enumerable.Range(0, Rank).Select(k => Enumerable.Range(0, In).Sum(i => (double)a[k * In + i] * x[row * In + i])).ToArray();
                var rg = new double[Out]; // r·g, the gradient reaching both scaled terms
                for (int j = 0; j < Out; j++)
                {
                    double plain = Enumerable.Range(0, In).Sum(i => (double)w[j * In + i] * x[row * In + i]);
                    double lora = s * Enumerable.Range(0, Rank).Sum(k => (double)b[j * Rank + k] * h[k]);
                    // LoRA: g = 1, so both forms agree.
                    y[row * Out + j] = plain + (bias?[j] ?? 0) + (gOf(j) - 1) * plain + gOf(j) * lora;
                    double rj = r[row * Out + j];
                    rg[j] = rj * gOf(j);
                    if (dm != null)
                    {
                        dm[j] += rj * (plain + lora) / (m![j] / gOf(j));
                    }
                    for (int k = 0; k < Rank; k++)
                    {
                        db[j * Rank + k] += s * rg[j] * h[k];
                    }
                }
                for (int k = 0; k < Rank; k++)
                {
                    double back = Enumerable.Range(0, Out).Sum(j => rg[j] * b[j * Rank + k]); // (r·g)·B, column k
                    for (int i = 0; i < In; i++)
                    {
                        da[k * In + i] += s * back * x[row * In + i];
                        dx[row * In + i] += s * back * a[k * In + i];
                    }
                }
                for (int i = 0; i < In; i++)
                {
                    dx[row * In + i] += Enumerable.Range(0, Out).Sum(j => rg[j] * w[j * In + i]);
                }
            }
            return new Reference(y, dx, da, db, dm);
        }
    }

    /// <summary>PEFT's init leaves the model as it was: lora_B = 0, and DoRA's magnitude is the row norm of W.</summary>
    [Theory]
    [InlineData(false, LoraInit.Kaiming)]
    [InlineData(false, LoraInit.Gaussian)]
    [InlineData(true, LoraInit.Kaiming)]
    [InlineData(true, LoraInit.Gaussian)]
    public void A_fresh_adapter_leaves_the_output_unchanged(bool useDora, LoraInit init)
    {
        using var s = new Setup(hasBias: true);
        float[] before = s.Forward();

        using LoraAdapterSet set = LoraAdapterSet.Create([s.Linear], Config(useDora, init: init), seed: 3);

        Assert.Equal(before, s.Forward());
        LoraAdapter adapter = set.Adapters[0];
        Assert.All(adapter.B.ToFloatArray(), v => Assert.Equal(0f, v));
        if (useDora)
        {
            double[] rowNorms = Enumerable.Range(0, Out).Select(j => Math.Sqrt(s.W.Skip(j * In).Take(In).Sum(v => (double)v * v))).ToArray();
            // PEFT's magnitude is the row norm of W in fp32: In = 5 squared terms and a square root carry
            // at most (In + 1)·2⁻²⁴ ≈ 3.6e-7 relative error against the double norm; 1e-6 covers it.
            Compare.AllClose("magnitude", adapter.Magnitude!.ToFloatArray(), rowNorms, [Out], new Tol(1e-6, 1e-6));
        }
    }

    /// <summary>"gaussian": A ~ N(0, (1/r)²); true: kaiming_uniform_(a=√5), i.e. U(−1/√in, 1/√in).</summary>
    [Fact]
    public void Lora_a_starts_gaussian_with_std_one_over_r_or_uniform_within_one_over_sqrt_in()
    {
        const int rank = 4, inFeatures = 400, outFeatures = 300;
        using Context ctx = Context.Create(DeviceKind.Cpu);
        float[] ones = Enumerable.Repeat(1f, outFeatures * inFeatures).ToArray();
        foreach (LoraInit init in new[] { LoraInit.Gaussian, LoraInit.Kaiming })
        {
            using var linear = new Linear("m.proj", new DenseWeight(Tensor.FromArray(ctx, ones, outFeatures, inFeatures)), null);
            using LoraAdapterSet set = LoraAdapterSet.Create([linear],
                LoraConfig.Create(TargetModules.FromNames("proj"), r: rank, initLoraWeights: init), seed: 5);
            double[] a = set.Adapters[0].A.ToFloatArray().Select(v => (double)v).ToArray();
            double mean = a.Average(), std = Math.Sqrt(a.Select(v => (v - mean) * (v - mean)).Average());
            // 1600 samples: the sample std is within 5 % of the true one far beyond 5σ (σ ≈ 1.8 %).
            double expectedStd = init == LoraInit.Gaussian ? 1.0 / rank : 1 / Math.Sqrt(3 * inFeatures);
            Assert.InRange(std, 0.9 * expectedStd, 1.1 * expectedStd);
            if (init == LoraInit.Kaiming)
            {
                Assert.All(a, v => Assert.InRange(v, -1 / Math.Sqrt(inFeatures), 1 / Math.Sqrt(inFeatures)));
            }
        }
    }

    [Fact]
    public void Disable_switches_every_adapter_off_and_back_on_in_one_call()
    {
        using var s = new Setup(hasBias: true);
        float[] plain = s.Forward();
        using LoraAdapterSet set = LoraAdapterSet.Create([s.Linear], Config(useDora: true), seed: 3);
        float[] adapted = s.Forward();
        Assert.NotEqual(plain, adapted);

        using (set.Disable())
        {
            Assert.Equal(plain, s.Forward());
        }

        Assert.Equal(adapted, s.Forward());
    }

    /// <summary>Inverted dropout: each element zeroed with probability p, the rest scaled by 1 / (1 − p), and so is the gradient.</summary>
    [Fact]
    public void Dropout_zeroes_a_fraction_p_and_scales_the_rest_in_value_and_gradient()
    {
        const int n = 10_000;
        const double p = 0.25;
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using var tape = new Tape();
        Tensor x = tape.Own(Tensor.FromArray(ctx, Enumerable.Repeat(1f, n).ToArray(), 100, 100));
        x.RequiresGrad = true;

        Tensor dropped = LoraDropout.Apply(x, p, new Random(7));
        float[] values = dropped.ToFloatArray();
        tape.Backward(Ops.Sum(dropped));
        float[] grad = x.Grad!.ToFloatArray();

        int zeros = values.Count(v => v == 0f);
        // Binomial(10 000, 0.25): σ ≈ 43, so ±250 is beyond 5σ.
        Assert.InRange(zeros, n * p - 250, n * p + 250);
        Assert.All(values, v => Assert.True(v == 0f || v == (float)(1 / (1 - p)), $"dropout value {v}"));
        Assert.Equal(values, grad);
    }

    [Fact]
    public void Dropout_acts_only_while_training_and_repeats_with_its_seed()
    {
        using var s = new Setup(hasBias: false);
        using LoraAdapterSet set = LoraAdapterSet.Create([s.Linear], Config(useDora: false, dropout: 0.5), seed: 3);
        float[] evaluation = s.Forward();

        set.Training = true;
        set.SeedDropout(11);
        float[] first = s.Forward();
        set.SeedDropout(11);
        float[] again = s.Forward();
        float[] next = s.Forward();
        set.Training = false;

        Assert.NotEqual(evaluation, first);
        Assert.Equal(first, again);
        Assert.NotEqual(first, next);
        Assert.Equal(evaluation, s.Forward());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Merging_folds_the_adapter_into_the_weight_and_keeps_the_bias(bool useDora)
    {
        using var s = new Setup(hasBias: true);
        LoraAdapterSet set = LoraAdapterSet.Create([s.Linear], Config(useDora), seed: 3);
        float[] adapted = s.Forward();

        set.MergeAndUnload();

        Assert.Null(s.Linear.Adapter);
        Assert.Equal(s.Bias, s.Linear.Bias!.ToFloatArray());
        Compare.AllClose("merged output", s.Forward(), adapted.Select(v => (double)v).ToArray(), [Rows, Out], new Tol(Atol, 0));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Save_load_save_is_byte_identical(bool useDora)
    {
        using var s = new Setup(hasBias: true);
        using var dir = new TempDirectory();
        using (LoraAdapterSet created = LoraAdapterSet.Create([s.Linear], Config(useDora), seed: 3))
        {
            created.Save(dir.Path("first"));
        }
        float[] firstOutput;
        using (LoraAdapterSet loaded = LoraAdapterSet.Load([s.Linear], dir.Path("first")))
        {
            firstOutput = s.Forward();
            loaded.Save(dir.Path("second"));
        }

        foreach (string file in new[] { LoraConfig.FileName, LoraAdapterSet.WeightsFileName })
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir.Path("first"), file)), File.ReadAllBytes(Path.Combine(dir.Path("second"), file)));
        }
        Assert.NotEqual(s.Forward(), firstOutput); // disposing the set detached it
    }

    [Fact]
    public void A_file_whose_tensors_disagree_with_the_module_names_the_tensor()
    {
        using var s = new Setup(hasBias: false);
        using var dir = new TempDirectory();
        Config(useDora: false).Save(dir.Root);
        var writer = new SafeTensorsWriter();
        string prefix = $"{LoraAdapterSet.KeyPrefix}{ModuleName}.";
        writer.Add(prefix + "lora_A.weight", new float[Rank * (In + 1)], Rank, In + 1);
        writer.Add(prefix + "lora_B.weight", new float[Out * Rank], Out, Rank);
        writer.Add(prefix + "lora_C.weight", new float[1], 1);
        writer.Save(dir.Path(LoraAdapterSet.WeightsFileName));

        var unexpected = Assert.Throws<SafeTensorsException>(() => LoraAdapterSet.Load([s.Linear], dir.Root));
        Assert.Contains(prefix + "lora_C.weight", unexpected.Message);

        writer = new SafeTensorsWriter();
        writer.Add(prefix + "lora_A.weight", new float[Rank * (In + 1)], Rank, In + 1);
        writer.Add(prefix + "lora_B.weight", new float[Out * Rank], Out, Rank);
        writer.Save(dir.Path(LoraAdapterSet.WeightsFileName));
        var misshapen = Assert.Throws<SafeTensorsException>(() => LoraAdapterSet.Load([s.Linear], dir.Root));
        Assert.Equal(prefix + "lora_A.weight", misshapen.TensorName);
        Assert.Contains($"[{Rank}, {In}]", misshapen.Message);
        Assert.Null(s.Linear.Adapter);
    }
}
