using NativeVlm.Vision;
using SkiaSharp;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// Every PNG bit depth and colour type, plain and Adam7-interlaced, with every row filter, decoded
/// into the mode and samples Pillow's PngImagePlugin gives; and PNGs that libpng (through Skia) wrote.
/// </summary>
public class PngDecoderTests
{
    public static TheoryData<int, byte, bool> Formats()
    {
        var formats = new TheoryData<int, byte, bool>();
        (int Depth, byte Colour)[] combinations =
        [
            (1, TestPng.Grey), (2, TestPng.Grey), (4, TestPng.Grey), (8, TestPng.Grey),
            (1, TestPng.Palette), (2, TestPng.Palette), (4, TestPng.Palette), (8, TestPng.Palette),
            (8, TestPng.Rgb), (16, TestPng.Rgb), (8, TestPng.GreyAlpha), (16, TestPng.GreyAlpha), (8, TestPng.Rgba), (16, TestPng.Rgba),
        ];
        foreach ((int depth, byte colour) in combinations)
        {
            formats.Add(depth, colour, false);
            formats.Add(depth, colour, true);
        }
        return formats;
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void Samples_unpack_into_Pillows_mode(int bitDepth, byte colourType, bool interlaced)
    {
        const int width = 13, height = 11;
        int channels = colourType switch { TestPng.Grey or TestPng.Palette => 1, TestPng.GreyAlpha => 2, TestPng.Rgb => 3, _ => 4 };
        var random = new Random(bitDepth * 100 + colourType * 10 + (interlaced ? 1 : 0));
        int[] samples = Enumerable.Range(0, width * height * channels).Select(_ => random.Next(1 << bitDepth)).ToArray();
        byte[]? palette = colourType == TestPng.Palette ? RandomBytes(random, 3 << bitDepth) : null;

        DecodedImage image = ImageDecoder.Decode(TestPng.Encode(width, height, bitDepth, colourType, samples, palette, interlaced), "test.png");

        (ImageMode mode, Func<int, int, int> expected) = (colourType, bitDepth) switch
        {
            (TestPng.Grey, 1) => (ImageMode.Bilevel, (Func<int, int, int>)((p, c) => samples[p])),
            (TestPng.Grey, 8) => (ImageMode.L, (p, c) => samples[p]),
            (TestPng.Grey, _) => (ImageMode.L, (p, c) => samples[p] * 255 / ((1 << bitDepth) - 1)),
            (TestPng.Palette, _) => (ImageMode.P, (p, c) => samples[p]),
            (TestPng.GreyAlpha, 8) => (ImageMode.LA, (p, c) => samples[p * 2 + c]),
            (TestPng.GreyAlpha, _) => (ImageMode.RGBA, (p, c) => samples[p * 2 + (c == 3 ? 1 : 0)] >> 8),
            _ => (colourType == TestPng.Rgb ? ImageMode.RGB : ImageMode.RGBA, (p, c) => samples[p * channels + c] >> (bitDepth - 8)),
        };
        Assert.Equal(mode, image.Mode);
        Assert.Equal((width, height), (image.Width, image.Height));
        int outChannels = mode.Channels();
        var want = new byte[width * height * outChannels];
        for (int p = 0; p < width * height; p++)
        {
            for (int c = 0; c < outChannels; c++)
            {
                want[p * outChannels + c] = (byte)expected(p, c);
            }
        }
        VisionAssert.BytesEqual(want, image.Pixels.Pixels, $"{bitDepth}-bit colour type {colourType}{(interlaced ? ", interlaced" : "")}");
        Assert.Equal(palette, image.Palette);
    }

    [Fact]
    public void Sixteen_bit_greyscale_is_refused_with_the_reason()
    {
        byte[] png = TestPng.Encode(2, 2, 16, TestPng.Grey, [0, 1000, 40000, 65535]);
        var e = Assert.Throws<ImageInputException>(() => ImageDecoder.Decode(png, "deep.png"));
        Assert.StartsWith("deep.png: 16-bit greyscale PNG", e.Message);
    }

    [Theory]
    [InlineData(SKColorType.Rgba8888, SKAlphaType.Unpremul, ImageMode.RGBA)]
    [InlineData(SKColorType.Rgb888x, SKAlphaType.Opaque, ImageMode.RGB)]
    [InlineData(SKColorType.Gray8, SKAlphaType.Opaque, ImageMode.L)]
    public void Pngs_that_libpng_wrote_decode_to_their_pixels(SKColorType colourType, SKAlphaType alphaType, ImageMode mode)
    {
        var info = new SKImageInfo(37, 23, colourType, alphaType);
        var random = new Random(7);
        // A smooth gradient plus noise, so that libpng's adaptive filtering picks every filter type.
        byte[] pixels = Enumerable.Range(0, info.BytesSize).Select(i => (byte)(i / 5 + random.Next(4))).ToArray();
        if (colourType == SKColorType.Rgb888x)
        {
            for (int i = 3; i < pixels.Length; i += 4)
            {
                pixels[i] = 255;
            }
        }
        using var bitmap = new SKBitmap(info);
        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
        using SKData png = bitmap.Encode(SKEncodedImageFormat.Png, 100);

        DecodedImage image = ImageDecoder.Decode(png.ToArray(), "skia.png");

        Assert.Equal(mode, image.Mode);
        int channels = mode.Channels(), stride = info.BytesPerPixel;
        byte[] want = Enumerable.Range(0, info.Width * info.Height).SelectMany(p => pixels.AsSpan(p * stride, channels).ToArray()).ToArray();
        VisionAssert.BytesEqual(want, image.Pixels.Pixels, mode.ToString());
    }

    private static byte[] RandomBytes(Random random, int count)
    {
        var bytes = new byte[count];
        random.NextBytes(bytes);
        return bytes;
    }
}
