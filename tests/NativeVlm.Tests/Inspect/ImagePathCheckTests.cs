using System.Text.Json.Nodes;
using NativeVlm.Checks;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests.Inspect;

/// <summary>
/// ImagePathCheck on the stitched fixture (SmolVLM vision + Qwen3 decoder): images reach its decoder; the
/// same model with a stale image_token_id, or two identical images, fail. The prompt is the inputs
/// file's first sample, token ids as transformers' processor made them (the fixture has no tokenizer).
/// </summary>
[Trait("Category", Fixtures.Category)]
public class ImagePathCheckTests
{
    private const string Model = "tiny-qwen3-smvl";

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Images_reach_the_decoder_of_the_stitched_model(string backend)
    {
        using Context ctx = Backends.Open(backend);
        using Idefics3Model model = Idefics3Model.Load(Fixtures.Path(Model), ctx);
        Idefics3Inputs prompt = FirstSample(model.Config);

        ImagePathResult result = ImagePathCheck.Run(model,
            ImagePathCheck.WithRandomPixels(prompt, ImagePathCheck.FirstImageSeed),
            ImagePathCheck.WithRandomPixels(prompt, ImagePathCheck.SecondImageSeed));

        Assert.True(result.Passed, result.Failure);
        Assert.Equal(Array.IndexOf(prompt.InputIds, model.Config.ImageTokenId), result.FirstImagePosition);
        Assert.Equal(prompt.InputIds.Count(id => id == model.Config.ImageTokenId), result.ImageTokens);
        // Causal attention: positions before the first image token cannot see it, so their logits are bit-identical.
        Assert.Equal(0, result.MaxLogitChangeBeforeImage);
        Assert.True(result.MaxLogitChangeFromImage > 0);
        Assert.True(double.IsFinite(result.ConnectorGradientNorm!.Value) && result.ConnectorGradientNorm > 0);
        Assert.All(model.Connector.Parameters, p => Assert.Null(p.Grad));
    }

    [Fact]
    public void The_same_image_twice_fails_because_the_logits_do_not_change()
    {
        using Context ctx = Backends.Open("cpu");
        using Idefics3Model model = Idefics3Model.Load(Fixtures.Path(Model), ctx);
        Idefics3Inputs image = ImagePathCheck.WithRandomPixels(FirstSample(model.Config), ImagePathCheck.FirstImageSeed);

        ImagePathResult result = ImagePathCheck.Run(model, image, image);

        Assert.False(result.Passed);
        Assert.Equal(0, result.MaxLogitChangeFromImage);
        Assert.Contains("do not change with the image", result.Failure);
    }

    [Fact]
    public void A_stale_image_token_id_fails_before_the_model_runs()
    {
        using var dir = new TempDirectory();
        string snapshot = InspectTests.CopySnapshot(Model, dir.Path("stale"));
        int staleId = InspectTests.IdAbsentFrom(Fixtures.Path(Model, "inputs.safetensors"));
        JsonNode config = JsonNode.Parse(File.ReadAllText(Path.Combine(snapshot, "config.json")))!;
        config["image_token_id"] = staleId;
        File.WriteAllText(Path.Combine(snapshot, "config.json"), config.ToJsonString());
        using Context ctx = Backends.Open("cpu");
        using Idefics3Model model = Idefics3Model.Load(snapshot, ctx);
        Idefics3Inputs prompt = FirstSample(model.Config);

        ImagePathResult result = ImagePathCheck.Run(model,
            ImagePathCheck.WithRandomPixels(prompt, ImagePathCheck.FirstImageSeed),
            ImagePathCheck.WithRandomPixels(prompt, ImagePathCheck.SecondImageSeed));

        Assert.False(result.Passed);
        Assert.Equal(0, result.ImageTokens);
        Assert.Null(result.MaxLogitChangeFromImage);
        Assert.Contains($"no token of the prompt is config.json's image_token_id {staleId}", result.Failure);
    }

    [Fact]
    public void Random_pixels_fill_the_valid_pixels_of_real_frames_and_keep_padding_zero()
    {
        using SafeTensorsReader file = SafeTensorsReader.Open(Fixtures.Path(Model, "inputs.safetensors"));
        Idefics3Inputs batch = Idefics3Inputs.Read(file, "");

        Idefics3Inputs random = ImagePathCheck.WithRandomPixels(batch, ImagePathCheck.FirstImageSeed);

        int[] shape = batch.PixelShape!;
        int plane = shape[3] * shape[4];
        for (int i = 0; i < random.PixelValues!.Length; i++)
        {
            int frame = i / (shape[2] * plane), pixel = i % plane;
            bool valid = batch.PixelAttentionMask![frame * plane + pixel] != 0;
            Assert.True(valid ? random.PixelValues[i] is >= -1 and <= 1 && random.PixelValues[i] != 0 : random.PixelValues[i] == 0,
                $"pixel value {i} is {random.PixelValues[i]} (valid: {valid})");
        }
    }

    private static Idefics3Inputs FirstSample(Idefics3Config config)
    {
        using SafeTensorsReader file = SafeTensorsReader.Open(Fixtures.Path(Model, "inputs.safetensors"));
        return ImagePathCheck.FirstSample(Idefics3Inputs.Read(file, ""), config.ImageTokenId);
    }
}
