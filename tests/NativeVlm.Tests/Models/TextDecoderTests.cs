using NativeVlm.Autograd;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests;

/// <summary>
/// The text decoder against transformers' runs of the model fixtures: the fixture's inputs_embeds
/// (text.hidden_states.0, image features already merged) go in, every traced hidden state, the
/// logits, the next-token log-probs and the loss are compared; the loss gradient is compared too.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class TextDecoderTests(ITestOutputHelper output)
{
    /// <summary>
    /// Hidden states, logits and log-probs: the fixtures' READMEs put transformers' own fp32-vs-fp64
    /// differences at ≤ 3e-6 (≤ 8e-6 for the Qwen3 logits), so an independent fp32 computation
    /// lands well inside 1e-4.
    /// </summary>
    private const double Atol = 1e-4;

    /// <summary>Losses are means over the target tokens, which average the per-token errors down.</summary>
    private const double LossAtol = 1e-5;

    /// <summary>(model folder, name prefix of the case in inputs/outputs.safetensors).</summary>
    public static TheoryData<string, string> Cases => new()
    {
        { "tiny-idefics3", "" },
        { "tiny-idefics3", "partial." },
        { "tiny-qwen3-smvl", "" },
    };

    public static TheoryData<string> Models => new() { "tiny-idefics3", "tiny-qwen3-smvl" };

    /// <summary>A fixture model's config, its decoder and its LM head (lm_head.weight, or embed_tokens when tied).</summary>
    private sealed class Loaded : IDisposable
    {
        public Loaded(string model, Context ctx)
        {
            Config = Idefics3Config.Load(Fixtures.Path(model));
            using SafeTensorsReader reader = SafeTensorsReader.Open(Fixtures.Path(model));
            var weights = new Weights(reader, ctx);
            Decoder = TextDecoder.Load(weights.Sub("model").Sub("text_model"), Config.Text);
            LmHead = Config.TieWordEmbeddings
                ? Decoder.EmbedTokens
                : weights.Get("lm_head.weight", Config.Text.VocabSize, Config.Text.HiddenSize);
        }

        public Idefics3Config Config { get; }

        public TextDecoder Decoder { get; }

        public Tensor LmHead { get; }

        public void Dispose()
        {
            if (!Config.TieWordEmbeddings)
            {
                LmHead.Dispose();
            }
            Decoder.Dispose();
        }
    }

    private static SafeTensorsReader Inputs(string model) => SafeTensorsReader.Open(Fixtures.Path(model, "inputs.safetensors"));

    private static SafeTensorsReader Outputs(string model) => SafeTensorsReader.Open(Fixtures.Path(model, "outputs.safetensors"));

    /// <summary>attention_mask (I64 in the file) as the decoder takes it: uint8 [batch, seq].</summary>
    private static Tensor AttentionMask(Context ctx, SafeTensorsReader inputs, string prefix) =>
        Tensor.FromArray(ctx, inputs.ReadInt64(prefix + "attention_mask").Select(m => (byte)m).ToArray(),
            inputs.GetInfo(prefix + "attention_mask").Shape.ToArray());

    /// <summary>targets[b, t] = source[b, t + 1], −100 at the last position: transformers' shift for causal LM.</summary>
    private static Tensor ShiftedTargets(Context ctx, SafeTensorsReader inputs, string name)
    {
        long[] source = inputs.ReadInt64(name);
        long[] shape = inputs.GetInfo(name).Shape.ToArray();
        int seq = (int)shape[1];
        int[] targets = source.Select((_, i) => i % seq + 1 < seq ? (int)source[i + 1] : Ops.IgnoreIndex).ToArray();
        return Tensor.FromArray(ctx, targets, shape);
    }

    /// <summary>max |actual − expected| over the rows (of width expected.Length / keep.Length) whose keep is 1.</summary>
    private static double MaxAbsError(float[] actual, float[] expected, long[] keep)
    {
        Assert.Equal(expected.Length, actual.Length);
        int width = expected.Length / keep.Length;
        double max = 0;
        for (int row = 0; row < keep.Length; row++)
        {
            if (keep[row] != 1)
            {
                continue;
            }
            for (int i = row * width; i < (row + 1) * width; i++)
            {
                max = Math.Max(max, Math.Abs((double)actual[i] - expected[i]));
            }
        }
        return max;
    }

    private void AssertClose(string name, double error, double atol)
    {
        output.WriteLine($"{name}: max abs error {error:E2}");
        Assert.True(error <= atol, $"{name}: max abs error {error:E3} > {atol:E0}");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Every_text_model_tensor_is_loaded_with_the_shape_its_config_implies(string model)
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        Idefics3Config config = Idefics3Config.Load(Fixtures.Path(model));
        using SafeTensorsReader reader = SafeTensorsReader.Open(Fixtures.Path(model));
        var weights = new Weights(reader, ctx);
        const string prefix = "model.text_model.";
        string[] textNames = reader.Names.Where(n => n.StartsWith(prefix, StringComparison.Ordinal)).ToArray();
        foreach (string other in reader.Names.Except(textNames))
        {
            weights.Ignore(other);
        }

        using TextDecoder decoder = TextDecoder.Load(weights.Sub("model").Sub("text_model"), config.Text);

        // Throws on any missing or misshapen decoder tensor and on any text_model tensor left unused.
        weights.ThrowIfInvalid();
        Tensor[] parameters = decoder.Parameters.ToArray();
        Assert.Equal(textNames.Length, parameters.Distinct(ReferenceEqualityComparer.Instance).Count());
        Assert.Equal(textNames.Select(n => reader.GetInfo(n).ElementCount).Sum(), parameters.Sum(p => p.ElementCount));
        Assert.Equal(reader.GetInfo(prefix + "embed_tokens.weight").Shape.ToArray(), decoder.EmbedTokens.Shape.ToArray());
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Hidden_states_logits_logprobs_and_loss_match_transformers(string model, string prefix)
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using var loaded = new Loaded(model, ctx);
        using SafeTensorsReader inputs = Inputs(model), outputs = Outputs(model);
        using Tensor embeds = outputs.ToTensor(ctx, prefix + "text.hidden_states.0");
        using Tensor mask = AttentionMask(ctx, inputs, prefix);
        using Tensor nextTokens = ShiftedTargets(ctx, inputs, prefix + "input_ids");
        using Tensor labels = ShiftedTargets(ctx, inputs, prefix + "labels");
        long[] attention = inputs.ReadInt64(prefix + "attention_mask");
        int layers = loaded.Config.Text.NumHiddenLayers;

        using var scope = new TensorScope();
        var traced = new Dictionary<string, float[]>();
        var order = new List<string>();
        Tensor hidden = loaded.Decoder.Forward(embeds, mask, (name, value) =>
        {
            order.Add(name);
            traced.Add(name, value.ToFloatArray());
        });

        string[] expectedNames = Enumerable.Range(0, layers + 1).Select(n => $"text.hidden_states.{n}").ToArray();
        Assert.Equal(expectedNames, order);
        foreach (string name in expectedNames)
        {
            AssertClose(prefix + name, MaxAbsError(traced[name], outputs.ReadFloat32(prefix + name), attention), Atol);
        }
        Assert.Equal(traced[expectedNames[^1]], hidden.ToFloatArray());

        float[] logits = Ops.Linear(hidden, loaded.LmHead).ToFloatArray();
        AssertClose(prefix + "logits", MaxAbsError(logits, outputs.ReadFloat32(prefix + "logits"), attention), Atol);

        // Ours is [batch, seq] with 0 in the ignored last column; the fixture's is [batch, seq − 1].
        float[] logProbs = Ops.LmLogProb(hidden, loaded.LmHead, nextTokens).ToFloatArray();
        long seq = embeds.Dim(1);
        float[] shifted = logProbs.Where((_, i) => i % seq < seq - 1).ToArray();
        long[] targetMask = inputs.ReadInt64(prefix + "target_mask");
        AssertClose(prefix + "next_token_logprobs",
            MaxAbsError(shifted, outputs.ReadFloat32(prefix + "next_token_logprobs"), targetMask), Atol);

        float loss = Ops.CrossEntropy(hidden, loaded.LmHead, labels).ToFloatArray()[0];
        AssertClose(prefix + "loss", Math.Abs(loss - outputs.ReadFloat32(prefix + "loss")[0]), LossAtol);
    }

    /// <summary>
    /// The fixtures' READMEs leave padded positions out of the comparison as transformers-specific;
    /// the decoder reproduces them (left padding attends uniformly to every key), and the loss of a
    /// left-padded row counts the prediction made at its last padding token, so they are checked too.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void Hidden_states_at_padded_positions_match_transformers_too(string model, string prefix)
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using var loaded = new Loaded(model, ctx);
        using SafeTensorsReader inputs = Inputs(model), outputs = Outputs(model);
        using Tensor embeds = outputs.ToTensor(ctx, prefix + "text.hidden_states.0");
        using Tensor mask = AttentionMask(ctx, inputs, prefix);
        long[] padding = inputs.ReadInt64(prefix + "attention_mask").Select(m => 1 - m).ToArray();
        output.WriteLine($"{padding.Sum()} padded positions");

        using var scope = new TensorScope();
        var traced = new Dictionary<string, float[]>();
        loaded.Decoder.Forward(embeds, mask, (name, value) => traced.Add(name, value.ToFloatArray()));

        foreach ((string name, float[] values) in traced)
        {
            AssertClose(prefix + name, MaxAbsError(values, outputs.ReadFloat32(prefix + name), padding), Atol);
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Embed_gives_the_inputs_embeds_at_every_token_but_the_image_tokens(string model, string prefix)
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using var loaded = new Loaded(model, ctx);
        using SafeTensorsReader inputs = Inputs(model), outputs = Outputs(model);
        using Tensor ids = inputs.ToTensor(ctx, prefix + "input_ids");
        long[] notImage = inputs.ReadInt64(prefix + "input_ids").Select(id => id == loaded.Config.ImageTokenId ? 0L : 1L).ToArray();

        using var scope = new TensorScope();
        Tensor embeds = loaded.Decoder.Embed(ids);

        Assert.Equal(outputs.GetInfo(prefix + "text.hidden_states.0").Shape.ToArray(), embeds.Shape.ToArray());
        // A gather copies the table's rows: exact, padding tokens included.
        Assert.Equal(0.0, MaxAbsError(embeds.ToFloatArray(), outputs.ReadFloat32(prefix + "text.hidden_states.0"), notImage));
    }

    /// <summary>
    /// grads.safetensors holds d loss / d connector weight of transformers' SFT step. The connector
    /// is rebuilt here from ops (pixel shuffle + projection of the fixture's vision output, checked
    /// against connector.image_hidden_states) so that the gradient reaches it through the decoder's
    /// backward, with and without gradient checkpointing.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_loss_gradient_through_the_decoder_matches_transformers(bool checkpointing)
    {
        const string model = "tiny-qwen3-smvl", connectorName = "model.connector.modality_projection.proj.weight";
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using var loaded = new Loaded(model, ctx);
        loaded.Decoder.GradientCheckpointing = checkpointing;
        Idefics3Config config = loaded.Config;
        using SafeTensorsReader inputs = Inputs(model), outputs = Outputs(model);
        using SafeTensorsReader weightsFile = SafeTensorsReader.Open(Fixtures.Path(model));
        using SafeTensorsReader grads = SafeTensorsReader.Open(Fixtures.Path(model, "grads.safetensors"));
        using Tensor connector = weightsFile.ToTensor(ctx, connectorName); // (text hidden, vision hidden · scale²)
        connector.RequiresGrad = true;
        using Tensor vision = outputs.ToTensor(ctx, "vision.last_hidden_state"); // (frames, patches, vision hidden)
        using Tensor ids = inputs.ToTensor(ctx, "input_ids");
        using Tensor mask = AttentionMask(ctx, inputs, "");
        using Tensor labels = ShiftedTargets(ctx, inputs, "labels");
        int[] imagePositions = ids.ToInt32Array().Select((id, i) => (id, i)).Where(p => p.id == config.ImageTokenId)
            .Select(p => p.i).ToArray();
        using Tensor imageIndex = Tensor.FromArray(ctx, imagePositions, imagePositions.Length);
        long batch = ids.Dim(0), seq = ids.Dim(1), hidden = config.Text.HiddenSize;

        float loss;
        using (var tape = new Tape())
        {
            Tensor features = Ops.Linear(Ops.PixelShuffle(vision, config.ScaleFactor), connector); // (frames, image_seq_len, hidden)
            AssertClose("connector.image_hidden_states",
                MaxAbsError(features.ToFloatArray(), outputs.ReadFloat32("connector.image_hidden_states"), [1]), Atol);
            Tensor embeds = Ops.IndexCopy(loaded.Decoder.Embed(ids).Reshape(batch * seq, hidden), features.Reshape(-1, hidden),
                imageIndex).Reshape(batch, seq, hidden);
            Tensor lossTensor = Ops.CrossEntropy(loaded.Decoder.Forward(embeds, mask), loaded.LmHead, labels);
            loss = lossTensor.ToFloatArray()[0];
            tape.Backward(lossTensor);
        }

        AssertClose("loss", Math.Abs(loss - outputs.ReadFloat32("loss")[0]), LossAtol);
        // transformers' fp32-vs-fp64 difference on this gradient is 2.7e-7 (max |value| 0.18).
        AssertClose(connectorName + ".grad",
            MaxAbsError(connector.Grad!.ToFloatArray(), grads.ReadFloat32(connectorName + ".grad"), [1]), 1e-5);
    }

    /// <summary>
    /// Padding tokens reach the loss only through the uniform attention of the left padding (real
    /// tokens mask them as keys): the gradient on them must be non-zero and agree with a central
    /// difference of the loss along its own direction.
    /// </summary>
    [SkippableFact]
    public void The_loss_gradient_reaches_the_padding_through_its_uniform_attention()
    {
        const string model = "tiny-idefics3";
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using var loaded = new Loaded(model, ctx);
        using SafeTensorsReader inputs = Inputs(model), outputs = Outputs(model);
        using Tensor mask = AttentionMask(ctx, inputs, "");
        using Tensor labels = ShiftedTargets(ctx, inputs, "labels");
        long[] shape = outputs.GetInfo("text.hidden_states.0").Shape.ToArray();
        float[] x = outputs.ReadFloat32("text.hidden_states.0");
        byte[] attention = mask.ToByteArray();
        int seq = (int)shape[1], hidden = (int)shape[2];
        Skip.IfNot(attention.Where((_, i) => i % seq == 0).Contains((byte)0), "the fixture has no left-padded row");

        float Loss(float[] embedsValues, out float[] gradient)
        {
            using Tensor embeds = Tensor.FromArray(ctx, embedsValues, shape);
            embeds.RequiresGrad = true;
            using var tape = new Tape();
            Tensor loss = Ops.CrossEntropy(loaded.Decoder.Forward(embeds, mask), loaded.LmHead, labels);
            tape.Backward(loss);
            gradient = embeds.Grad!.ToFloatArray();
            return loss.ToFloatArray()[0];
        }

        Loss(x, out float[] grad);
        // The direction: the gradient on the padding tokens, normalised; its derivative is its norm.
        double[] direction = grad.Select((g, i) => attention[i / hidden] == 0 ? (double)g : 0).ToArray();
        double norm = Math.Sqrt(direction.Sum(d => d * d));
        Assert.True(norm > 0, "no gradient reaches the padding tokens");

        const double step = 1e-2;
        float[] Shifted(double sign) => x.Select((v, i) => (float)(v + sign * step * direction[i] / norm)).ToArray();
        double centralDifference = (Loss(Shifted(+1), out _) - Loss(Shifted(-1), out _)) / (2 * step);
        output.WriteLine($"|d loss / d padding| = {norm:E4}, central difference {centralDifference:E4}");
        // fp32 losses differ in their last bits (~5e-7 here), which the step magnifies to ~3e-5.
        Assert.True(Math.Abs(centralDifference - norm) <= 1e-2 * norm + 1e-4, $"{centralDifference:E4} vs {norm:E4}");
    }

    [Fact]
    public void Under_NoGrad_the_forward_records_nothing_and_computes_the_same()
    {
        const string model = "tiny-idefics3";
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using var loaded = new Loaded(model, ctx);
        using SafeTensorsReader inputs = Inputs(model), outputs = Outputs(model);
        using Tensor embeds = outputs.ToTensor(ctx, "text.hidden_states.0");
        using Tensor mask = AttentionMask(ctx, inputs, "");

        float[] plain;
        using (new TensorScope())
        {
            plain = loaded.Decoder.Forward(embeds, mask).ToFloatArray();
        }

        embeds.RequiresGrad = true;
        using var tape = new Tape();
        using (Tape.NoGrad())
        {
            Tensor hidden = loaded.Decoder.Forward(embeds, mask);
            Assert.False(hidden.RequiresGrad);
            Assert.Equal(plain, hidden.ToFloatArray());
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Every_tensor_of_a_training_step_goes_with_its_tape(bool checkpointing)
    {
        const string model = "tiny-idefics3";
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using var loaded = new Loaded(model, ctx);
        loaded.Decoder.GradientCheckpointing = checkpointing;
        using SafeTensorsReader inputs = Inputs(model), outputs = Outputs(model);
        long before = ctx.Memory.LiveBytes;

        using (Tensor embeds = outputs.ToTensor(ctx, "text.hidden_states.0"))
        using (Tensor mask = AttentionMask(ctx, inputs, ""))
        using (Tensor labels = ShiftedTargets(ctx, inputs, "labels"))
        {
            embeds.RequiresGrad = true;
            using (var tape = new Tape())
            {
                tape.Backward(Ops.CrossEntropy(loaded.Decoder.Forward(embeds, mask), loaded.LmHead, labels));
            }
            Assert.All(embeds.Grad!.ToFloatArray(), g => Assert.True(float.IsFinite(g)));
        }

        Assert.Equal(before, ctx.Memory.LiveBytes);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Bf16_storage_keeps_the_loss_lowers_the_peak_and_moves_the_gradient_less_than_bf16_math_does(string model)
    {
        (float _, float[] exactGrad, long _) = Step(model, MathMode.F32, DType.F32);
        (float f32Loss, float[] f32Grad, long f32Peak) = Step(model, MathMode.Bf16, DType.F32);
        (float bf16Loss, float[] bf16Grad, long bf16Peak) = Step(model, MathMode.Bf16, DType.BF16);

        // Narrowing happens only once the forward is past a tensor: the loss reads no rounded value.
        Assert.Equal(f32Loss, bf16Loss);
        output.WriteLine($"{model}: step peak above the weights {f32Peak:N0} B with f32 storage, {bf16Peak:N0} B with bf16");
        Assert.True(bf16Peak < f32Peak, $"bf16 storage peaked at {bf16Peak:N0} B, f32 storage at {f32Peak:N0} B");

        double mathShift = RelativeDistance(f32Grad, exactGrad), storageShift = RelativeDistance(bf16Grad, f32Grad);
        output.WriteLine($"{model}: d(loss)/d(embeds) moves by {mathShift:E2} (relative L2) with bf16 math, by {storageShift:E2} more with bf16 storage");
        // Both are bf16 roundings of activations: the math mode rounds every operand of every product (weights
        // included), storage only what the backward reads back. Storage moving the gradient by as much as the
        // math mode already does, which transformers' bf16=True accepts, would mean more than rounding.
        // Zero would mean nothing was narrowed.
        Assert.InRange(storageShift, double.Epsilon, mathShift);
    }

    private static double RelativeDistance(float[] values, float[] reference) =>
        Math.Sqrt(values.Zip(reference, (a, b) => (double)(a - b) * (a - b)).Sum()) /
        Math.Sqrt(reference.Sum(g => (double)g * g));

    /// <summary>A loss and its gradient to the input embeddings in <paramref name="math"/>, with activations saved as <paramref name="saved"/>.</summary>
    private static (float Loss, float[] Grad, long PeakAboveWeights) Step(string model, MathMode math, DType saved)
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        ctx.MathMode = math;
        ctx.SavedActivationDType = saved;
        using var loaded = new Loaded(model, ctx);
        using SafeTensorsReader inputs = Inputs(model), outputs = Outputs(model);
        using Tensor embeds = outputs.ToTensor(ctx, "text.hidden_states.0");
        using Tensor mask = AttentionMask(ctx, inputs, "");
        using Tensor labels = ShiftedTargets(ctx, inputs, "labels");
        embeds.RequiresGrad = true;
        long before = ctx.Memory.LiveBytes;
        ctx.ResetPeakMemory();
        float loss;
        using (var tape = new Tape())
        {
            Tensor lossTensor = Ops.CrossEntropy(loaded.Decoder.Forward(embeds, mask), loaded.LmHead, labels);
            loss = lossTensor.ToFloatArray()[0];
            tape.Backward(lossTensor);
        }
        long peak = ctx.Memory.PeakBytes - before;
        float[] grad = embeds.Grad!.ToFloatArray();
        embeds.Grad.Dispose();
        embeds.Grad = null;
        Assert.Equal(before, ctx.Memory.LiveBytes);
        return (loss, grad, peak);
    }
}
