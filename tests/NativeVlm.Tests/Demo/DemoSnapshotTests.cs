using NativeVlm.Autograd;
using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Demo;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;
using Xunit;
using TemplateMessage = NativeVlm.Text.ChatMessage;
using TemplatePart = NativeVlm.Text.ChatPart;

namespace NativeVlm.Tests.Demo;

/// <summary>The demo snapshot loads as a SmolVLM snapshot does, through the processor and the model, and runs.</summary>
public sealed class DemoSnapshotTests : IDisposable
{
    private const int Seed = 3;

    private readonly TempDirectory _dir = new();

    public DemoSnapshotTests() => DemoSnapshot.Create(_dir.Root, Seed);

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void The_processor_loads_with_smolvlm_tokens_and_one_frame_of_16_image_tokens()
    {
        VlmProcessor processor = VlmProcessor.Load(_dir.Root);

        Assert.Equal(16, processor.Prompt.ImageSeqLen);
        Assert.False(processor.ImageProcessor.Config.DoImageSplitting);
        Assert.Equal(64, processor.ImageProcessor.Config.MaxImageSize);
        Assert.Equal(DemoSnapshot.TokenId("<image>"), processor.ImageTokenId);
        Assert.Equal(DemoSnapshot.TokenId("<end_of_utterance>"), processor.EosTokenId);
        Assert.Equal(DemoSnapshot.TokenId("<pad>"), processor.PadTokenId);
        foreach (string token in new[] { "<|im_start|>", "<fake_token_around_image>", "<global-img>", "<row_1_col_1>", "<row_4_col_4>" })
        {
            Assert.Equal(DemoSnapshot.TokenId(token), processor.Tokenizer.TokenToId(token));
        }
        // One token per UTF-8 byte, whose id is the byte.
        Assert.Equal([.. "Red. é"u8.ToArray().Select(b => (int)b)], processor.Tokenizer.Encode("Red. é", addSpecialTokens: false));
        string prompt = processor.Template.Render(
            [new TemplateMessage("user", [TemplatePart.Image, TemplatePart.FromText("What colour is the shape?")])], addGenerationPrompt: true);
        Assert.Equal("<|im_start|>User:<image>What colour is the shape?<end_of_utterance>\nAssistant:", prompt);
    }

    [Fact]
    public void The_model_loads_every_tensor_with_transformers_initialisation()
    {
        Idefics3Config config = Idefics3Config.Load(_dir.Root);
        using SafeTensorsReader reader = SafeTensorsReader.Open(_dir.Root);

        Assert.Equal(DemoSnapshot.VocabSize, config.Text.VocabSize);
        Assert.Equal(Idefics3Model.ParameterCount(config), reader.Names.Sum(name => reader.GetInfo(name).ElementCount));
        Assert.All(reader.Names.Where(name => name.Contains("norm") && name.EndsWith(".weight", StringComparison.Ordinal)),
            name => Assert.All(reader.ReadFloat32(name), value => Assert.Equal(1f, value)));
        Assert.All(reader.Names.Where(name => name.EndsWith(".bias", StringComparison.Ordinal)),
            name => Assert.All(reader.ReadFloat32(name), value => Assert.Equal(0f, value)));
        float[] embeddings = reader.ReadFloat32("model.text_model.embed_tokens.weight");
        double std = Math.Sqrt(embeddings.Average(value => (double)value * value));
        Assert.InRange(std, 0.019, 0.021);

        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(_dir.Root, ctx);
        Assert.Equal(16, model.Config.ImageSeqLen);
    }

    [Fact]
    public async Task A_dpo_batch_of_demo_pairs_runs_forward_to_finite_completion_log_probs()
    {
        string dataset = _dir.Path("dataset");
        await DemoDataset.CreateAsync(dataset, trainPairs: 2, testPairs: 1, Seed);
        VlmProcessor processor = VlmProcessor.Load(_dir.Root);
        var samples = new List<DpoSample>();
        await foreach (DpoSample sample in TrainingSamples.ReadDpoAsync(
            new SampleBuilder(processor, new SampleLimits()), [dataset], "train", BadRowPolicy.Strict, new DatasetSummary()))
        {
            samples.Add(sample);
        }
        DpoBatch batch = new BatchCollator(processor.PadTokenId).CollateDpo(samples);
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(_dir.Root, ctx);

        using var scope = new TensorScope();
        Tensor hidden = model.Forward(batch.ModelInputs);
        float[] logProbs = model.NextTokenLogProbs(hidden, batch.ModelInputs).ToFloatArray();

        Idefics3Inputs inputs = batch.ModelInputs;
        Assert.Equal(new long[] { 4, inputs.SeqLen, 64 }, hidden.Shape.ToArray());
        Assert.Equal(4 * inputs.SeqLen, logProbs.Length);
        // Random weights give every token about the same probability: ln(1 / vocab) where a completion token is predicted.
        for (int b = 0; b < 4; b++)
        {
            for (int t = 0; t + 1 < inputs.SeqLen; t++)
            {
                float value = logProbs[b * inputs.SeqLen + t];
                Assert.True(float.IsFinite(value) && value <= 0, $"log-prob {value} at row {b}, position {t}");
                if (inputs.Labels![b * inputs.SeqLen + t + 1] != SampleBuilder.IgnoreIndex)
                {
                    Assert.InRange(value, -Math.Log(DemoSnapshot.VocabSize) - 1, -Math.Log(DemoSnapshot.VocabSize) + 1);
                }
            }
        }
    }
}
