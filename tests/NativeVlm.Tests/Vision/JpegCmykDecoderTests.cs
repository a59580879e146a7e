using NativeVlm.IO;
using NativeVlm.Vision;
using SkiaSharp;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// Four-component JPEGs beyond the fixture's Adobe CMYK: YCCK, a missing Adobe segment, and the
/// kinds that are refused. Skia's libjpeg-turbo converts these to RGB with the same arithmetic as
/// Pillow's CMYK → RGB, so its RGB is the reference for the CMYK decoded here.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class JpegCmykDecoderTests
{
    /// <summary>The image-decoding fixture's CMYK JPEGs: the cases whose decoded tensor has four channels.</summary>
    public static TheoryData<string> CmykFiles()
    {
        using SafeTensorsReader tensors = SafeTensorsReader.Open(Fixtures.Path("image-decoding", "decoded.safetensors"));
        return new TheoryData<string>(tensors.Names
            .Where(n => n.EndsWith(".decoded", StringComparison.Ordinal) && tensors.GetInfo(n).Shape is [_, _, 4])
            .Select(n => Fixtures.Path("image-decoding", n[..^".decoded".Length] + ".jpg")));
    }

    private static int IndexOf(byte[] data, params byte[] pattern) => data.AsSpan().IndexOf(pattern);

    private static byte[] SkiaRgb(byte[] jpeg)
    {
        using SKCodec codec = SKCodec.Create(new SKMemoryStream(jpeg));
        using SKBitmap bitmap = SKBitmap.Decode(jpeg, new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        byte[] rgba = bitmap.Bytes;
        return Enumerable.Range(0, rgba.Length / 4).SelectMany(p => rgba.AsSpan(p * 4, 3).ToArray()).ToArray();
    }

    /// <summary>Adobe transform 2: the first three components are YCC, converted by libjpeg's integer tables.</summary>
    [Theory]
    [MemberData(nameof(CmykFiles))]
    public void Ycck_converts_as_libjpeg(string file)
    {
        byte[] jpeg = File.ReadAllBytes(file);
        int adobe = IndexOf(jpeg, (byte)'A', (byte)'d', (byte)'o', (byte)'b', (byte)'e');
        jpeg[adobe + 11] = 2;
        DecodedImage image = ImageDecoder.Decode(jpeg, "ycck.jpg");
        Assert.Equal(ImageMode.CMYK, image.Mode);
        VisionAssert.BytesEqual(SkiaRgb(jpeg), RgbConversion.ToRgb(image).Pixels, "YCCK through CMYK to RGB");
    }

    [Theory]
    [MemberData(nameof(CmykFiles))]
    public void Without_an_Adobe_segment_four_components_are_CMYK(string file)
    {
        byte[] jpeg = File.ReadAllBytes(file);
        int adobe = IndexOf(jpeg, 0xFF, 0xEE);
        int length = (jpeg[adobe + 2] << 8) | jpeg[adobe + 3];
        byte[] stripped = [.. jpeg[..adobe], .. jpeg[(adobe + 2 + length)..]];
        Assert.Equal(ImageDecoder.Decode(jpeg, "adobe.jpg").Pixels.Pixels, ImageDecoder.Decode(stripped, "plain.jpg").Pixels.Pixels);
    }

    public static TheoryData<string, int, int?, string> UnsupportedKinds()
    {
        var cases = new TheoryData<string, int, int?, string>();
        foreach (string file in CmykFiles())
        {
            cases.Add(file, 0xC2, null, "progressive");
            cases.Add(file, 0xC9, null, "arithmetic-coded");
            cases.Add(file, 0xC0, 0x22, "subsampled");
        }
        return cases;
    }

    [Theory]
    [MemberData(nameof(UnsupportedKinds))]
    public void Unsupported_kinds_are_refused_by_name(string file, int frameMarker, int? sampling, string kind)
    {
        byte[] jpeg = File.ReadAllBytes(file);
        int sof = IndexOf(jpeg, 0xFF, 0xC0);
        jpeg[sof + 1] = (byte)frameMarker;
        if (sampling is int factors)
        {
            jpeg[sof + 11] = (byte)factors;
        }
        var e = Assert.Throws<ImageInputException>(() => ImageDecoder.Decode(jpeg, "cmyk.jpg"));
        Assert.StartsWith("cmyk.jpg: ", e.Message);
        Assert.Contains(kind, e.Message);
    }
}
