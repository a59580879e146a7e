using System.Text.Json.Nodes;
using NativeVlm.Checks;
using NativeVlm.Models;
using NativeVlm.Vision;
using Xunit;

namespace NativeVlm.Tests.Inspect;

/// <summary>
/// Tiles and image tokens per image size against transformers' Idefics3Processor on the image-processing
/// fixture: for every image and run (split, nosplit), the rows, columns and frames it recorded, and the
/// image tokens of its expanded prompt.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class ImageTokenCountsTests
{
    private const string Fixture = "image-processing";

    public static TheoryData<string, string> Cases()
    {
        var cases = new TheoryData<string, string>();
        JsonNode processing = Processing();
        foreach ((string image, JsonNode? entry) in processing["images"]!.AsObject())
        {
            foreach ((string run, _) in processing["runs"]!.AsObject())
            {
                if (entry![run] != null)
                {
                    cases.Add(image, run);
                }
            }
        }
        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Tiles_and_image_tokens_are_transformers(string image, string run)
    {
        JsonNode processing = Processing();
        JsonNode expected = processing["images"]![image]![run]!;
        JsonNode size = processing["images"]![image]!["size_wh"]!;
        using var dir = new TempDirectory();
        File.WriteAllText(dir.Path(Idefics3ImageProcessorConfig.FileName), processing["runs"]![run]!["image_processor"]!.ToJsonString());
        File.WriteAllText(dir.Path(Idefics3Prompt.FileName),
            new JsonObject { ["image_seq_len"] = processing["processor"]!["image_seq_len"]!.GetValue<int>() }.ToJsonString());
        // The model config only supplies image_seq_len when processor_config.json lacks it; any fixture config serves.
        SnapshotProcessor processor = SnapshotProcessor.Load(dir.Root, Idefics3Config.Load(Fixtures.Path("tiny-idefics3", "config.json")));

        ImageTokenCount count = ImageTokenCounts.Count(processor, size[0]!.GetValue<int>(), size[1]!.GetValue<int>());

        Assert.Equal(expected["rows"]!.GetValue<int>(), count.Rows);
        Assert.Equal(expected["cols"]!.GetValue<int>(), count.Cols);
        Assert.Equal(expected["pixel_values_shape"]![1]!.GetValue<int>(), count.Frames);
        string imageToken = processing["processor"]!["image_token"]!.GetValue<string>();
        Assert.Equal(expected["expanded_prompt"]!.GetValue<string>().Split(imageToken).Length - 1, count.ImageTokens);
        Assert.Null(count.ExpansionTokens);
    }

    private static JsonNode Processing() =>
        JsonNode.Parse(File.ReadAllText(Fixtures.Path(Fixture, "processing.json")))!;
}
