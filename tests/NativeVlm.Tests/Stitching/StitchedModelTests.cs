using NativeVlm.Autograd;
using NativeVlm.Batches;
using NativeVlm.Checks;
using NativeVlm.Data;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Nn;
using NativeVlm.Stitching;
using NativeVlm.Tensors;
using NativeVlm.Text;
using ChatMessage = NativeVlm.Text.ChatMessage;
using NativeVlm.Vision;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests.Stitching;

/// <summary>
/// The stitched snapshot as a model: with transformers' connector substituted it reproduces the
/// fixture's forward and connector gradient; with its own seeded connector, images reach the decoder.
/// </summary>
[Trait("Category", Fixtures.Category)]
public sealed class StitchedModelTests(ITestOutputHelper output) : IDisposable
{
    private readonly StitchSources _sources = new();

    private string Stitched()
    {
        string folder = _sources.Path("stitched");
        ModelStitcher.Stitch(_sources.Vision, _sources.Text, folder, seed: 0, force: false);
        return folder;
    }

    [Fact]
    public void With_transformers_connector_every_output_and_the_connector_gradient_match_the_fixture()
    {
        string folder = Stitched();
        StitchSources.ReplaceTensor(folder, StitchedSnapshotCheck.ConnectorName, Fixtures.Path(StitchSources.Fixture, "stitched"));
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(folder, ctx);

        // As Idefics3ModelTests: the fixture's fp32-vs-fp64 differences are ≤ 7e-6 (tolerance.json), an
        // independent fp32 implementation sums in other orders, so the README's atol 1e-4 (1e-5 for the loss).
        ReferenceComparison.Result result = ReferenceComparison.Run(model, Fixtures.Path(StitchSources.Fixture, "inputs.safetensors"),
            Fixtures.Path(StitchSources.Fixture, "outputs.safetensors"), new ComparisonTolerances(Absolute: 1e-4, Relative: 1e-4, LossAbsolute: 1e-5));
        foreach (TensorComparison c in result.Compared)
        {
            output.WriteLine($"{c.Name}: max abs {c.MaxAbsError:E2}, rel {c.RelativeError:E2}");
        }
        Assert.All(result.Compared, c => Assert.True(c.Passed, $"{c.Name}: max abs {c.MaxAbsError:E3}, rel {c.RelativeError:E3} {c.Problem}"));
        Assert.Empty(result.NotProduced);

        using SafeTensorsReader inputs = SafeTensorsReader.Open(Fixtures.Path(StitchSources.Fixture, "inputs.safetensors"));
        using SafeTensorsReader grads = SafeTensorsReader.Open(Fixtures.Path(StitchSources.Fixture, "grads.safetensors"));
        float[] gradient = ConnectorGradient(model, Idefics3Inputs.Read(inputs, ""), out _);
        float[] expected = grads.ReadFloat32(StitchedSnapshotCheck.ConnectorName + ".grad");
        double maxError = gradient.Zip(expected, (g, e) => Math.Abs((double)g - e)).Max();
        output.WriteLine($"connector grad: max abs {maxError:E2}");
        // transformers' own fp32-vs-fp64 difference on this gradient is 5.9e-7 (max |value| 0.61): 1e-5 is a few times that after the longer sums here.
        Assert.True(maxError <= 1e-5, $"connector gradient: max abs error {maxError:E3}");
    }

    [Fact]
    public void Another_image_changes_the_logits_from_the_first_image_token_on_and_the_connector_gets_a_gradient()
    {
        string folder = Stitched();
        VlmProcessor processor = VlmProcessor.Load(folder);
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(folder, ctx);
        Idefics3Inputs first = Sample(processor, seed: 1), second = Sample(processor, seed: 2);
        Assert.Equal(first.InputIds, second.InputIds); // same size, so the same tiles and tokens: only the pixels differ
        int firstImageToken = Array.IndexOf(first.InputIds, processor.ImageTokenId);
        Assert.True(firstImageToken > 0, "the prompt has text before the image");

        float[] a = Logits(model, first), b = Logits(model, second);
        int vocab = model.Config.Text.VocabSize;
        double before = 0, from = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double difference = Math.Abs(a[i] - b[i]);
            if (i / vocab < firstImageToken)
            {
                before = Math.Max(before, difference);
            }
            else
            {
                from = Math.Max(from, difference);
            }
        }
        output.WriteLine($"max |Δ logits| before the first image token {before:E2}, from it on {from:E2}");
        // Causal attention: tokens before the first image token see no image, so their logits are the same computation, bit for bit.
        Assert.Equal(0.0, before);
        // From the image on the logits follow the pixels; a change below 1e-3 would mean the features barely reach the decoder.
        Assert.True(from > 1e-3, $"the logits change by only {from:E2} when the image changes");

        float[] gradient = ConnectorGradient(model, first, out float loss);
        double norm = Math.Sqrt(gradient.Sum(g => (double)g * g));
        output.WriteLine($"loss {loss:F4}, |d loss / d connector| {norm:E3}");
        Assert.True(norm > 0, "the connector gets no gradient: the image features do not reach the loss");
    }

    [Fact]
    public void The_sample_builder_expands_qwen3s_image_tokens_inside_the_user_turn_and_trains_the_caption()
    {
        string folder = Stitched();
        VlmProcessor processor = VlmProcessor.Load(folder);
        var builder = new SampleBuilder(processor, new SampleLimits());
        var row = new CaptionedRow(new RowLocation("captions.json", 0), Tests.Batches.TinySnapshot.Image(64, 32), "A grid.");

        SftSample sample = builder.BuildSft(row, BadRowPolicy.Strict, new DatasetSummary())!;

        // 64×32 with 32-pixel tiles (StitchSources' processor settings): one row of two tiles and the global image.
        string prompt = $"<|im_start|>user\n{processor.Prompt.ImageString(1, 2)}<|im_end|>\n<|im_start|>assistant\n";
        string answer = "A grid.<|im_end|>\n";
        Assert.StartsWith("<|im_start|>user\n<|vision_start|><row_1_col_1><|image_pad|>", prompt);
        Assert.Equal(processor.Tokenizer.Encode(prompt + answer, addSpecialTokens: false), sample.InputIds);
        int[] answerIds = processor.Tokenizer.Encode(answer, addSpecialTokens: false);
        Assert.Equal(answerIds, sample.Labels.Where(label => label != SampleBuilder.IgnoreIndex));
        Assert.Equal(3 * processor.Prompt.ImageSeqLen, sample.InputIds.Count(id => id == processor.ImageTokenId));
        Assert.Equal(3, sample.Images!.Frames);
    }

    /// <summary>A user turn with one noise image (50×30, as the fixture's) and a question, the assistant's answer; labels as SFT's whole-text loss.</summary>
    private static Idefics3Inputs Sample(VlmProcessor processor, int seed)
    {
        var random = new Random(seed);
        var pixels = new byte[50 * 30 * 3];
        random.NextBytes(pixels);
        var image = new DecodedImage($"noise {seed}", ImageMode.RGB, new Raster(50, 30, 3, pixels));
        ProcessedImages processed = processor.ImageProcessor.Process([[image]]);
        string text = processor.Template.Render(
        [
            new ChatMessage("user", [ChatPart.FromText("Look: "), ChatPart.Image, ChatPart.FromText("What is this?")]),
            new ChatMessage("assistant", [ChatPart.FromText("A grid.")]),
        ]);
        int[] ids = processor.Tokenizer.Encode(processor.Prompt.Expand(text, processed.Rows[0], processed.Cols[0]), addSpecialTokens: false);
        int[] labels = ids.Select(id => id == processor.ImageTokenId ? SampleBuilder.IgnoreIndex : id).ToArray();
        return new Idefics3Inputs(1, ids.Length, ids, Enumerable.Repeat((byte)1, ids.Length).ToArray(),
            processed.PixelValues, processed.PixelShape, processed.PixelAttentionMask, labels, null);
    }

    private static float[] Logits(Idefics3Model model, Idefics3Inputs inputs)
    {
        using var scope = new TensorScope();
        return model.Logits(model.Forward(inputs)).ToFloatArray();
    }

    /// <summary>d loss / d connector weight, every other weight frozen.</summary>
    private static float[] ConnectorGradient(Idefics3Model model, Idefics3Inputs inputs, out float loss)
    {
        Tensor weight = ((DenseWeight)model.Connector.Projection.Weight).Tensor;
        weight.RequiresGrad = true;
        using (var tape = new Tape())
        {
            Tensor lossTensor = model.Loss(model.Forward(inputs), inputs);
            loss = lossTensor.ToFloatArray()[0];
            tape.Backward(lossTensor);
        }
        return weight.Grad!.ToFloatArray();
    }

    public void Dispose() => _sources.Dispose();
}
