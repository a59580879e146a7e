using NativeVlm.IO;
using NativeVlm.Vision;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// ../fixtures/image-decoding: real JPEG (4:2:0, 4:2:2, 4:4:4, progressive, greyscale, CMYK) and
/// WebP (lossy, lossless) files against what Pillow decoded, what transformers' convert_to_rgb made
/// of that, and the split run's pixel values, all bit for bit. Cases are the file's "*.decoded" tensors.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class ImageDecodingFixtureTests
{
    private const string Folder = "image-decoding";

    private static SafeTensorsReader Tensors() => SafeTensorsReader.Open(Fixtures.Path(Folder, "decoded.safetensors"));

    public static TheoryData<string> Files()
    {
        using SafeTensorsReader tensors = Tensors();
        return new TheoryData<string>(tensors.Names.Where(n => n.EndsWith(".decoded", StringComparison.Ordinal)).Select(n => n[..^".decoded".Length]));
    }

    /// <summary>The encoded file of a case: its name with whatever extension the folder has for it.</summary>
    private static DecodedImage Decode(string name) =>
        ImageDecoder.DecodeFile(Directory.GetFiles(Fixtures.Path(Folder), name + ".*").Single(f => !f.EndsWith(".safetensors", StringComparison.Ordinal)));

    [Theory]
    [MemberData(nameof(Files))]
    public void Pillows_decoded_pixels(string name)
    {
        DecodedImage image = Decode(name);
        using SafeTensorsReader tensors = Tensors();
        VisionAssert.RasterEqual(tensors.GetInfo(name + ".decoded").Shape.ToArray(), tensors.ReadUInt8(name + ".decoded"), image.Pixels, name + ".decoded");
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void Transformers_convert_to_rgb(string name)
    {
        Raster rgb = RgbConversion.ToRgb(Decode(name));
        using SafeTensorsReader tensors = Tensors();
        VisionAssert.RasterEqual(tensors.GetInfo(name + ".rgb").Shape.ToArray(), tensors.ReadUInt8(name + ".rgb"), rgb, name + ".rgb");
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void The_split_runs_pixel_values_and_mask(string name)
    {
        ProcessedImages processed = ImageProcessingFixtureTests.ProcessorOf("split").Process([[Decode(name)]]);
        using SafeTensorsReader tensors = Tensors();
        string prefix = name + ".split.";
        Assert.Equal(tensors.GetInfo(prefix + "pixel_values").Shape.ToArray().Select(d => (int)d), processed.PixelShape);
        VisionAssert.BitEqual(tensors.ReadFloat32(prefix + "pixel_values"), processed.PixelValues, prefix + "pixel_values");
        VisionAssert.BytesEqual(tensors.ReadUInt8(prefix + "pixel_attention_mask"), processed.PixelAttentionMask, prefix + "pixel_attention_mask");
    }
}
