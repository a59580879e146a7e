using NativeVlm.Autograd;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Nn;
using NativeVlm.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests;

/// <summary>
/// The SigLIP vision tower and the connector: every traced stage against transformers' outputs in
/// the model fixtures, gradients under a tape, frame selection and the position-id arithmetic.
/// </summary>
public class VisionTests(ITestOutputHelper output)
{
    private static readonly string[] ModelFolders = ["tiny-idefics3", "tiny-qwen3-smvl"];

    public static TheoryData<string> Models => new(ModelFolders);

    // The fixtures' own float32-vs-float64 differences are ≤ 2e-6 on these tensors (their README);
    // an independent float32 implementation sums conv, matmuls and softmax in other orders and lands
    // within a small multiple of that. 1e-4 is the bound on hidden states, ≥ 50× that error.
    private const double Atol = 1e-4;

    /// <summary>Every (model, case prefix) whose inputs hold images: "" and e.g. "partial.".</summary>
    public static TheoryData<string, string> ImageCases()
    {
        var cases = new TheoryData<string, string>();
        foreach (string model in ModelFolders)
        {
            using SafeTensorsReader inputs = SafeTensorsReader.Open(Fixtures.Path(model, "inputs.safetensors"));
            foreach (string name in inputs.Names.Where(n => n.EndsWith("pixel_values", StringComparison.Ordinal)))
            {
                cases.Add(model, name[..^"pixel_values".Length]);
            }
        }
        return cases;
    }

    private sealed class Loaded(Context context, Idefics3Config config, SiglipVisionModel vision, Idefics3Connector connector) : IDisposable
    {
        public Context Context { get; } = context;
        public Idefics3Config Config { get; } = config;
        public SiglipVisionModel Vision { get; } = vision;
        public Idefics3Connector Connector { get; } = connector;

        public void Dispose()
        {
            Vision.Dispose();
            Connector.Dispose();
            Context.Dispose();
        }
    }

    /// <summary>
    /// The vision tower and connector of a fixture model on the CPU. The text model's tensors are
    /// passed over, so that ThrowIfInvalid reports exactly the vision and connector tensors that are
    /// missing, misshapen, or that no loader took.
    /// </summary>
    private static Loaded Load(string model)
    {
        Idefics3Config config = Idefics3Config.Load(Fixtures.Path(model));
        Context ctx = Context.Create(DeviceKind.Cpu);
        using SafeTensorsReader reader = SafeTensorsReader.Open(Fixtures.Path(model));
        var weights = new Weights(reader, ctx);
        var vision = SiglipVisionModel.Load(weights.Sub("model").Sub("vision_model"), config.Vision);
        var connector = Idefics3Connector.Load(weights.Sub("model").Sub("connector"), config);
        foreach (string name in reader.Names.Where(n => !IsVisionOrConnector(n)))
        {
            weights.Ignore(name);
        }
        weights.ThrowIfInvalid();
        return new Loaded(ctx, config, vision, connector);
    }

    private static bool IsVisionOrConnector(string name) =>
        name.StartsWith("model.vision_model.", StringComparison.Ordinal) || name.StartsWith("model.connector.", StringComparison.Ordinal);

    /// <summary>pixel_values [batch, slots, c, h, w] and pixel_attention_mask of one case, as the caller hands them over.</summary>
    private static (float[] Pixels, int[] Shape, byte[] Mask) ReadImages(string model, string prefix)
    {
        using SafeTensorsReader inputs = SafeTensorsReader.Open(Fixtures.Path(model, "inputs.safetensors"));
        int[] shape = inputs.GetInfo(prefix + "pixel_values").Shape.ToArray().Select(d => (int)d).ToArray();
        byte[] mask = inputs.ReadInt64(prefix + "pixel_attention_mask").Select(m => m != 0 ? (byte)1 : (byte)0).ToArray();
        return (inputs.ReadFloat32(prefix + "pixel_values"), shape, mask);
    }

    /// <summary>The connector output of the real frames, and every traced tensor as (values, shape).</summary>
    private static (float[] Output, Dictionary<string, (float[] Values, long[] Shape)> Traced) Run(
        Loaded m, float[] pixels, int[] shape, byte[] mask)
    {
        (float[] frames, int frameCount, byte[] patchMask) =
            SiglipVisionModel.RealFramesAndPatchMask(pixels, shape, mask, m.Config.Vision.PatchSize);
        var traced = new Dictionary<string, (float[], long[])>();
        void Record(string name, Tensor t) => traced.Add(name, (t.ToFloatArray(), t.Shape.ToArray()));

        using var scope = new TensorScope();
        Tensor input = scope.Own(Tensor.FromArray(m.Context, frames, frameCount, shape[2], shape[3], shape[4]));
        Tensor result = m.Connector.Forward(m.Vision.Forward(input, patchMask, Record), Record);
        return (result.ToFloatArray(), traced);
    }

    [Theory]
    [Trait("Category", Fixtures.Category)]
    [MemberData(nameof(Models))]
    public void Every_vision_and_connector_parameter_is_a_checkpoint_tensor_of_its_shape(string model)
    {
        using Loaded m = Load(model);
        using SafeTensorsReader reader = SafeTensorsReader.Open(Fixtures.Path(model));

        var named = m.Vision.NamedParameters.Select(p => ("model.vision_model." + p.Name, p.Tensor))
            .Concat(m.Connector.NamedParameters.Select(p => ("model.connector." + p.Name, p.Tensor)))
            .ToDictionary();

        Assert.Equal(reader.Names.Where(IsVisionOrConnector).Order(StringComparer.Ordinal), named.Keys.Order(StringComparer.Ordinal));
        foreach ((string name, Tensor tensor) in named)
        {
            Assert.Equal(reader.GetInfo(name).Shape.ToArray(), tensor.Shape.ToArray());
            Assert.Equal(reader.ReadFloat32(name), tensor.ToFloatArray());
        }
    }

    [Theory]
    [Trait("Category", Fixtures.Category)]
    [MemberData(nameof(ImageCases))]
    public void Vision_tower_and_connector_match_transformers_at_every_traced_stage(string model, string prefix)
    {
        using Loaded m = Load(model);
        (float[] pixels, int[] shape, byte[] mask) = ReadImages(model, prefix);
        using SafeTensorsReader expected = SafeTensorsReader.Open(Fixtures.Path(model, "outputs.safetensors"));

        (float[] result, Dictionary<string, (float[] Values, long[] Shape)> traced) = Run(m, pixels, shape, mask);

        string[] stages = expected.Names.Where(n => n.StartsWith(prefix + "vision.", StringComparison.Ordinal)
                                                    || n.StartsWith(prefix + "connector.", StringComparison.Ordinal))
            .Select(n => n[prefix.Length..]).ToArray();
        Assert.Equal(stages.Order(StringComparer.Ordinal), traced.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(traced["connector.image_hidden_states"].Values, result);
        foreach (string stage in stages)
        {
            (float[] values, long[] tracedShape) = traced[stage];
            Assert.Equal(expected.GetInfo(prefix + stage).Shape.ToArray(), tracedShape);
            float[] want = expected.ReadFloat32(prefix + stage);
            double maxAbs = values.Zip(want, (a, b) => Math.Abs((double)a - b)).Max();
            output.WriteLine($"{model} {prefix}{stage}: max abs error {maxAbs:e2}");
            Assert.True(maxAbs <= Atol, $"{prefix}{stage}: max abs error {maxAbs:e2} > {Atol:e0}");
        }
    }

    /// <summary>
    /// Frames whose size is not a multiple of the patch: the conv never reads the remainder, so
    /// garbage there (and a valid mask over it) changes nothing, bit for bit.
    /// </summary>
    [Theory]
    [Trait("Category", Fixtures.Category)]
    [MemberData(nameof(ImageCases))]
    public void Rows_and_columns_beyond_the_last_whole_patch_are_ignored(string model, string prefix)
    {
        using Loaded m = Load(model);
        (float[] pixels, int[] shape, byte[] mask) = ReadImages(model, prefix);
        int patch = m.Config.Vision.PatchSize, extraRows = patch - 1, extraCols = patch / 2 + 1;
        int slots = shape[0] * shape[1], channels = shape[2], height = shape[3], width = shape[4];
        int paddedHeight = height + extraRows, paddedWidth = width + extraCols;
        var rng = new Random(7);
        var paddedPixels = new float[slots * channels * paddedHeight * paddedWidth];
        var paddedMask = new byte[slots * paddedHeight * paddedWidth];
        for (int s = 0; s < slots; s++)
        {
            bool real = pixels.AsSpan(s * channels * height * width, channels * height * width).ContainsAnyExcept(0f);
            for (int y = 0; y < paddedHeight; y++)
            {
                for (int x = 0; x < paddedWidth; x++)
                {
                    bool inside = y < height && x < width;
                    paddedMask[(s * paddedHeight + y) * paddedWidth + x] = inside ? mask[(s * height + y) * width + x] : (byte)1;
                    for (int c = 0; c < channels; c++)
                    {
                        paddedPixels[((s * channels + c) * paddedHeight + y) * paddedWidth + x] = inside
                            ? pixels[((s * channels + c) * height + y) * width + x]
                            : real ? (float)rng.NextDouble() * 4 - 2 : 0f;
                    }
                }
            }
        }

        (float[] plain, _) = Run(m, pixels, shape, mask);
        (float[] padded, _) = Run(m, paddedPixels, [shape[0], shape[1], channels, paddedHeight, paddedWidth], paddedMask);

        Assert.Equal(plain, padded);
    }

    [Theory]
    [Trait("Category", Fixtures.Category)]
    [MemberData(nameof(ImageCases))]
    public void Gradients_reach_the_vision_q_proj_and_the_connector_under_a_tape(string model, string prefix)
    {
        using Loaded m = Load(model);
        (float[] pixels, int[] shape, byte[] mask) = ReadImages(model, prefix);
        (float[] frames, int frameCount, byte[] patchMask) =
            SiglipVisionModel.RealFramesAndPatchMask(pixels, shape, mask, m.Config.Vision.PatchSize);
        Tensor qProj = ((DenseWeight)m.Vision.Layers[0].SelfAttn.QProj.Weight).Tensor, projection = ((DenseWeight)m.Connector.Projection.Weight).Tensor;
        qProj.RequiresGrad = true;
        projection.RequiresGrad = true;

        using (var tape = new Tape())
        {
            Tensor input = tape.Own(Tensor.FromArray(m.Context, frames, frameCount, shape[2], shape[3], shape[4]));
            using (Tape.NoGrad())
            {
                Assert.False(m.Connector.Forward(m.Vision.Forward(input, patchMask)).RequiresGrad);
            }
            tape.Backward(Ops.Sum(m.Connector.Forward(m.Vision.Forward(input, patchMask))));
        }

        foreach ((string name, Tensor weight) in new[] { ("q_proj", qProj), ("connector", projection) })
        {
            float[] grad = weight.Grad!.ToFloatArray();
            Assert.All(grad, g => Assert.True(float.IsFinite(g), $"{name} gradient holds {g}"));
            Assert.Contains(grad, g => g != 0f);
        }
    }

    [Fact]
    public void Padded_slots_are_dropped_and_a_patch_is_valid_when_any_of_its_pixels_is()
    {
        // 1 sample, 4 slots of 1 channel, 5×6 pixels, patch 2: a 2×3 grid, the last row unused.
        const int slots = 4, height = 5, width = 6, plane = height * width;
        var pixels = new float[slots * plane];
        var mask = new byte[slots * plane];
        pixels[3] = 0.5f;                 // slot 0: an image
        pixels[plane + 7] = -0f;          // slot 1: -0.0 == 0.0, padding
        pixels[2 * plane + 9] = float.NaN; // slot 2: NaN != 0.0, an image
        // slot 3: all zero, padding
        mask[3] = 1;                      // slot 0: pixel (0, 3) → patch (0, 1)
        mask[2 * plane + 3 * width + 5] = 1; // slot 2: pixel (3, 5) → patch (1, 2)
        mask[2 * plane + 4 * width] = 1;   // slot 2: pixel (4, 0): the unused last row

        (float[] frames, int frameCount, byte[] patchMask) = SiglipVisionModel.RealFramesAndPatchMask(pixels, [1, slots, 1, height, width], mask, 2);

        Assert.Equal(2, frameCount);
        Assert.Equal(pixels.AsSpan(0, plane).ToArray(), frames.AsSpan(0, plane).ToArray());
        Assert.Equal(pixels.AsSpan(2 * plane, plane).ToArray(), frames.AsSpan(plane, plane).ToArray());
        Assert.Equal(new byte[] { 0, 1, 0, 0, 0, 0, /* slot 2 */ 0, 0, 0, 0, 0, 1 }, patchMask);
    }

    [Theory]
    [InlineData(27)] // SmolVLM-Instruct: 384 px, patch 14
    [InlineData(32)] // SmolVLM-256M/500M, SmolVLM2: 512 px, patch 16
    public void A_full_frame_of_a_SmolVLM_grid_gets_positions_in_order(int patchesPerSide)
    {
        int patches = patchesPerSide * patchesPerSide;
        byte[] full = Enumerable.Repeat((byte)1, patches).ToArray();

        int[] ids = SiglipVisionEmbeddings.PositionIds(full, 1, patchesPerSide, patchesPerSide, patchesPerSide);

        Assert.Equal(Enumerable.Range(0, patches), ids);
    }

    [Fact]
    public void A_partial_frame_spreads_its_patches_over_the_position_grid()
    {
        // 4 patches per side; frame 0 has a 3-row × 2-column top-left rectangle, frame 1 is full.
        // Rows: arange(0, 1 − 1e-6, float32(1/3)) = [0, 0.33333334, 0.6666667] against edges
        // [0.25, 0.5, 0.75] → buckets 0, 1, 2; columns: [0, 0.5] → 0, 2 (right=True: 0.5 ≥ 0.5).
        byte[] mask =
        [
            1, 1, 0, 0,
            1, 1, 0, 0,
            1, 1, 0, 0,
            0, 0, 0, 0,
            .. Enumerable.Repeat((byte)1, 16),
        ];

        int[] expected =
        [
            0, 2, 0, 0,
            4, 6, 0, 0,
            8, 10, 0, 0,
            0, 0, 0, 0,
            .. Enumerable.Range(0, 16),
        ];

        Assert.Equal(expected, SiglipVisionEmbeddings.PositionIds(mask, 2, 4, 4, 4));
    }

    [Theory]
    [InlineData(new byte[] { 1, 1, 1, 0 })] // an L shape
    [InlineData(new byte[] { 0, 0, 0, 1 })] // a rectangle away from the top left
    [InlineData(new byte[] { 0, 0, 0, 0 })] // no valid patch
    public void A_patch_mask_that_is_not_a_top_left_rectangle_is_refused(byte[] mask)
    {
        var e = Assert.Throws<ArgumentException>(() => SiglipVisionEmbeddings.PositionIds(mask, 1, 2, 2, 2));
        Assert.Contains("frame 0", e.Message);
    }
}
