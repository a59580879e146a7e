using System.Text.Json;
using NativeVlm.IO;
using NativeVlm.Vision;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// ../fixtures/image-processing: PNGs of modes RGB, RGBA, L and P through transformers'
/// Idefics3ImageProcessor and Idefics3Processor. Every intermediate resize, the pixel values, the
/// masks, rows and columns and the expanded prompt must be equal bit for bit; cases, settings and
/// shapes come from processing.json and processed.safetensors.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class ImageProcessingFixtureTests
{
    private const string Folder = "image-processing";

    private static JsonElement Processing()
    {
        using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(Fixtures.Path(Folder, "processing.json")));
        return document.RootElement.Clone();
    }

    private static SafeTensorsReader Tensors() => SafeTensorsReader.Open(Fixtures.Path(Folder, "processed.safetensors"));

    public static TheoryData<string> Images() => new(Processing().GetProperty("images").EnumerateObject().Select(p => p.Name));

    public static TheoryData<string> Runs() => new(Processing().GetProperty("runs").EnumerateObject().Select(p => p.Name));

    public static TheoryData<string, string> ImageRuns()
    {
        var cases = new TheoryData<string, string>();
        JsonElement processing = Processing();
        foreach (JsonProperty image in processing.GetProperty("images").EnumerateObject())
        {
            foreach (JsonProperty run in processing.GetProperty("runs").EnumerateObject())
            {
                cases.Add(image.Name, run.Name);
            }
        }
        return cases;
    }

    private static DecodedImage Decode(string image) =>
        ImageDecoder.DecodeFile(Fixtures.Path(Folder, Processing().GetProperty("images").GetProperty(image).GetProperty("file").GetString()!));

    /// <summary>The run's image_processor settings, written as a preprocessor_config.json and loaded as a snapshot's would be.</summary>
    internal static Idefics3ImageProcessor ProcessorOf(string run)
    {
        using var dir = new TempDirectory();
        string path = dir.Path(Idefics3ImageProcessorConfig.FileName);
        File.WriteAllText(path, Processing().GetProperty("runs").GetProperty(run).GetProperty("image_processor").GetRawText());
        return new Idefics3ImageProcessor(Idefics3ImageProcessorConfig.Load(path));
    }

    private static Idefics3Prompt Prompt() =>
        new(Processing().GetProperty("processor").GetProperty("image_seq_len").GetInt32());

    [Theory]
    [MemberData(nameof(Images))]
    public void A_png_decodes_to_Pillows_mode_and_pixels(string image)
    {
        DecodedImage decoded = Decode(image);
        JsonElement expected = Processing().GetProperty("images").GetProperty(image);
        Assert.Equal(expected.GetProperty("mode").GetString(), decoded.Mode.PillowName());
        Assert.Equal([expected.GetProperty("size_wh")[0].GetInt32(), expected.GetProperty("size_wh")[1].GetInt32()], new[] { decoded.Width, decoded.Height });
        using SafeTensorsReader tensors = Tensors();
        VisionAssert.RasterEqual(tensors.GetInfo($"{image}.input").Shape.ToArray(), tensors.ReadUInt8($"{image}.input"), decoded.Pixels, $"{image}.input");
        if (tensors.Contains($"{image}.palette"))
        {
            VisionAssert.BytesEqual(tensors.ReadUInt8($"{image}.palette"), decoded.Palette!, $"{image}.palette");
        }
        else
        {
            Assert.Null(decoded.Palette);
        }
    }

    [Theory]
    [MemberData(nameof(ImageRuns))]
    public void Every_resize_the_pixel_values_masks_rows_and_cols_are_transformers_bit_for_bit(string image, string run)
    {
        var resized = new List<Raster>();
        ProcessedImages processed = ProcessorOf(run).Process([[Decode(image)]], resized.Add);

        string prefix = $"{image}.{run}.";
        using SafeTensorsReader tensors = Tensors();
        int calls = tensors.Names.Count(n => n.StartsWith(prefix + "resize.", StringComparison.Ordinal));
        JsonElement expected = Processing().GetProperty("images").GetProperty(image).GetProperty(run);
        Assert.Equal(expected.GetProperty("resize_calls").GetArrayLength(), calls);
        Assert.Equal(calls, resized.Count);
        for (int i = 0; i < calls; i++)
        {
            string name = $"{prefix}resize.{i}";
            VisionAssert.RasterEqual(tensors.GetInfo(name).Shape.ToArray(), tensors.ReadUInt8(name), resized[i], name);
        }

        Assert.Equal(tensors.GetInfo(prefix + "pixel_values").Shape.ToArray().Select(d => (int)d), processed.PixelShape);
        VisionAssert.BitEqual(tensors.ReadFloat32(prefix + "pixel_values"), processed.PixelValues, prefix + "pixel_values");
        VisionAssert.BytesEqual(tensors.ReadUInt8(prefix + "pixel_attention_mask"), processed.PixelAttentionMask, prefix + "pixel_attention_mask");
        Assert.Equal([expected.GetProperty("rows").GetInt32()], processed.Rows.Single());
        Assert.Equal([expected.GetProperty("cols").GetInt32()], processed.Cols.Single());
    }

    [Theory]
    [MemberData(nameof(ImageRuns))]
    public void The_prompt_expands_as_Idefics3Processors(string image, string run)
    {
        JsonElement expected = Processing().GetProperty("images").GetProperty(image).GetProperty(run);
        string expanded = Prompt().Expand(expected.GetProperty("prompt").GetString()!,
            [expected.GetProperty("rows").GetInt32()], [expected.GetProperty("cols").GetInt32()]);
        Assert.Equal(expected.GetProperty("expanded_prompt").GetString(), expanded);
    }

    /// <summary>
    /// One call with one image per sample: slots past a sample's frames are zeros with a zero mask,
    /// and each sample's frames equal the single-image run's.
    /// </summary>
    [Theory]
    [MemberData(nameof(Runs))]
    public void A_batch_pads_each_sample_to_the_most_frames(string run)
    {
        JsonElement batch = Processing().GetProperty("runs").GetProperty(run).GetProperty("batch");
        string[] files = batch.GetProperty("images").EnumerateArray().Select(f => f.GetString()!).ToArray();
        ProcessedImages processed = ProcessorOf(run).Process(
            files.Select(f => (IReadOnlyList<DecodedImage>)[ImageDecoder.DecodeFile(Fixtures.Path(Folder, f))]).ToList());

        using SafeTensorsReader tensors = Tensors();
        Assert.Equal(batch.GetProperty("pixel_values_shape").EnumerateArray().Select(d => d.GetInt32()), processed.PixelShape);
        VisionAssert.BytesEqual(tensors.ReadUInt8($"batch.{run}.pixel_attention_mask"), processed.PixelAttentionMask, $"batch.{run}.pixel_attention_mask");
        Assert.Equal(batch.GetProperty("rows").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt32())), processed.Rows);
        Assert.Equal(batch.GetProperty("cols").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt32())), processed.Cols);

        int slotValues = 3 * processed.Height * processed.Width;
        for (int b = 0; b < files.Length; b++)
        {
            string single = $"{Path.GetFileNameWithoutExtension(files[b])}.{run}.pixel_values";
            float[] alone = tensors.ReadFloat32(single);
            var expected = new float[processed.Slots * slotValues];
            alone.CopyTo(expected, 0);
            VisionAssert.BitEqual(expected, processed.PixelValues.AsSpan(b * expected.Length, expected.Length).ToArray(), $"sample {b} of batch.{run} ({single} then zeros)");
        }
    }
}
