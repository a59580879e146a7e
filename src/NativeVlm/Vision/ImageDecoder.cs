using SkiaSharp;

namespace NativeVlm.Vision;

/// <summary>
/// Decodes PNG, JPEG and WebP into what Pillow 9.4's <c>Image.open(...).load()</c> holds: the same
/// mode and the same pixels. Greyscale and colour JPEGs and WebP go through Skia, whose
/// libjpeg-turbo (ISLOW IDCT, fancy upsampling) and libwebp produce Pillow's pixels bit for bit;
/// four-component (CMYK) JPEGs through <see cref="JpegCmykDecoder"/>, as Skia converts them to RGB;
/// PNG through <see cref="PngDecoder"/>. Anything else, and any corrupt, truncated or oversized
/// input, is an <see cref="ImageInputException"/> naming where the bytes came from; nothing here
/// crashes the process or allocates more than the pixel limit allows.
/// </summary>
public static class ImageDecoder
{
    /// <summary>
    /// Pillow's DecompressionBombError threshold, 2 × Image.MAX_IMAGE_PIXELS (2 × 89,478,485): an
    /// image Pillow opens opens here.
    /// </summary>
    public const long DefaultMaxPixels = 2L * (1024 * 1024 * 1024 / 4 / 3);

    public static DecodedImage DecodeFile(string path, long maxPixels = DefaultMaxPixels)
    {
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ImageInputException(path, $"cannot read the file ({e.Message})");
        }
        return Decode(data, path, maxPixels);
    }

    /// <param name="data">The encoded file.</param>
    /// <param name="origin">Where the bytes came from, for messages: a file path, or a dataset file and row.</param>
    /// <param name="maxPixels">Width × height above this is refused before any pixel is decoded.</param>
    public static DecodedImage Decode(ReadOnlySpan<byte> data, string origin, long maxPixels = DefaultMaxPixels)
    {
        if (data.StartsWith(PngDecoder.Signature))
        {
            return PngDecoder.Decode(data, origin, maxPixels);
        }
        if (data.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xD8, 0xFF]))
        {
            int components = JpegComponents(data, origin);
            return components == 4
                ? JpegCmykDecoder.Decode(data, origin, maxPixels)
                : DecodeWithSkia(data, origin, maxPixels, components);
        }
        if (data.Length >= 12 && data.StartsWith("RIFF"u8) && data[8..12].SequenceEqual("WEBP"u8))
        {
            return DecodeWithSkia(data, origin, maxPixels, jpegComponents: null);
        }
        throw new ImageInputException(origin, "not a PNG, JPEG or WebP file");
    }

    internal static void CheckSize(long width, long height, long maxPixels, string origin)
    {
        if (width < 1 || height < 1)
        {
            throw new ImageInputException(origin, $"image size {width}x{height} is empty");
        }
        if (width * height > maxPixels)
        {
            throw new ImageInputException(origin,
                $"image size {width}x{height} ({width * height} pixels) exceeds the limit of {maxPixels} pixels, could be a decompression bomb");
        }
    }

    /// <summary>
    /// The component count of the JPEG's frame header, which decides Pillow's mode (1: L, 3: RGB,
    /// 4: CMYK).
    /// </summary>
    private static int JpegComponents(ReadOnlySpan<byte> data, string origin)
    {
        int offset = 2;
        while (offset + 4 <= data.Length)
        {
            // Pillow skips bytes that are not a marker, and runs of 0xFF fill bytes.
            if (data[offset] != 0xFF || data[offset + 1] == 0xFF)
            {
                offset++;
                continue;
            }
            byte marker = data[offset + 1];
            int length = (data[offset + 2] << 8) | data[offset + 3];
            bool startOfFrame = marker is >= 0xC0 and <= 0xCF and not 0xC4 and not 0xC8 and not 0xCC;
            if (startOfFrame && offset + 10 <= data.Length)
            {
                return data[offset + 9];
            }
            if (marker == 0xDA || length < 2)
            {
                break;
            }
            offset += 2 + length;
        }
        throw new ImageInputException(origin, "JPEG has no frame header before its scan data (corrupt or truncated)");
    }

    private static DecodedImage DecodeWithSkia(ReadOnlySpan<byte> data, string origin, long maxPixels, int? jpegComponents)
    {
        using SKData encoded = SKData.CreateCopy(data);
        // The codec owns the stream and disposes of it.
        using SKCodec? codec = SKCodec.Create(new SKMemoryStream(encoded), out SKCodecResult opened);
        if (codec is null)
        {
            throw new ImageInputException(origin, $"cannot decode the image ({opened})");
        }
        SKImageInfo info = codec.Info;
        CheckSize(info.Width, info.Height, maxPixels, origin);
        ImageMode mode = jpegComponents switch
        {
            1 => ImageMode.L,
            3 => ImageMode.RGB,
            null => info.AlphaType == SKAlphaType.Opaque ? ImageMode.RGB : ImageMode.RGBA,
            int n => throw new ImageInputException(origin, $"cannot handle {n}-layer JPEG images"),
        };
        // Gray8 for greyscale; RGBA, unpremultiplied and without a colour space (so no colour
        // management), for the rest.
        SKImageInfo target = mode == ImageMode.L
            ? new SKImageInfo(info.Width, info.Height, SKColorType.Gray8, SKAlphaType.Opaque)
            : new SKImageInfo(info.Width, info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var decoded = new byte[target.BytesSize64];
        SKCodecResult result;
        unsafe
        {
            fixed (byte* pixels = decoded)
            {
                result = codec.GetPixels(target, (IntPtr)pixels);
            }
        }
        if (result != SKCodecResult.Success)
        {
            string reason = result == SKCodecResult.IncompleteInput ? "image file is truncated" : $"cannot decode the image ({result})";
            throw new ImageInputException(origin, reason);
        }
        return mode switch
        {
            ImageMode.L => new DecodedImage(origin, mode, new Raster(info.Width, info.Height, 1, decoded)),
            ImageMode.RGBA => new DecodedImage(origin, mode, new Raster(info.Width, info.Height, 4, decoded)),
            _ => new DecodedImage(origin, mode, DropAlpha(decoded, info.Width, info.Height)),
        };
    }

    private static Raster DropAlpha(byte[] rgba, int width, int height)
    {
        var rgb = Raster.Zeros(width, height, 3);
        for (int p = 0, q = 0; p < rgba.Length; p += 4, q += 3)
        {
            rgba.AsSpan(p, 3).CopyTo(rgb.Pixels.AsSpan(q));
        }
        return rgb;
    }
}
