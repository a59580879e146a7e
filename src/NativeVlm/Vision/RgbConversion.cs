namespace NativeVlm.Vision;

/// <summary>
/// transformers' <c>convert_to_rgb</c>: Pillow's convert("RGBA"), alpha-composited onto an opaque
/// white RGBA image with <c>Image.alpha_composite</c>, then convert("RGB"), which drops alpha.
/// </summary>
public static class RgbConversion
{
    /// <summary>Fractional bits of AlphaComposite.c's blend coefficients.</summary>
    private const int CompositePrecisionBits = 7;

    private const byte White = 255;

    /// <summary>
    /// image_transforms.convert_to_rgb on the decoded Pillow image (RGB is returned as it is).
    /// A PNG's tRNS chunk is not applied: the decoder does not keep it (see <see cref="PngDecoder"/>).
    /// </summary>
    /// <returns>[height, width, 3].</returns>
    public static Raster ToRgb(DecodedImage image) =>
        image.Mode == ImageMode.RGB
            ? new Raster(image.Width, image.Height, 3, (byte[])image.Pixels.Pixels.Clone())
            : CompositeOverWhite(ToRgba(image.Mode, image.Pixels, image.Palette), image.Width, image.Height);

    /// <summary>
    /// Idefics3ImageProcessor's convert_to_rgb on one frame's array: 1 channel is mode P when a
    /// palette is given (the source image's) and L otherwise, 3 channels RGB, 4 channels RGBA.
    /// </summary>
    /// <param name="frame">[height, width, 1 | 3 | 4].</param>
    /// <returns>[height, width, 3].</returns>
    public static Raster ToRgb(Raster frame, byte[]? palette)
    {
        ImageMode mode = frame.Channels switch
        {
            1 => palette is null ? ImageMode.L : ImageMode.P,
            3 => ImageMode.RGB,
            4 => ImageMode.RGBA,
            _ => throw new ArgumentException($"convert_to_rgb takes 1, 3 or 4 channels, not {frame.Channels}", nameof(frame)),
        };
        if (palette is not null && mode != ImageMode.P)
        {
            throw new ArgumentException($"a palette goes with 1-channel indices, the frame has {frame.Channels} channels", nameof(palette));
        }
        return CompositeOverWhite(ToRgba(mode, frame, palette), frame.Width, frame.Height);
    }

    /// <summary>Pillow's convert("RGBA") from each mode (Convert.c: bit2rgb, l2rgb, la2rgb, the palette, rgb2rgba, cmyk2rgb).</summary>
    private static byte[] ToRgba(ImageMode mode, Raster image, byte[]? palette)
    {
        byte[] src = image.Pixels;
        int pixels = image.Width * image.Height, channels = image.Channels;
        var rgba = new byte[pixels * 4];
        for (int i = 0; i < pixels; i++)
        {
            ReadOnlySpan<byte> p = src.AsSpan(i * channels, channels);
            Span<byte> o = rgba.AsSpan(i * 4, 4);
            o[3] = 255;
            switch (mode)
            {
                case ImageMode.Bilevel:
                    o[0] = o[1] = o[2] = p[0] != 0 ? (byte)255 : (byte)0;
                    break;
                case ImageMode.L:
                    o[0] = o[1] = o[2] = p[0];
                    break;
                case ImageMode.LA:
                    o[0] = o[1] = o[2] = p[0];
                    o[3] = p[1];
                    break;
                case ImageMode.P:
                    PaletteColour(palette!, p[0], o);
                    break;
                case ImageMode.RGB or ImageMode.RGBA:
                    p.CopyTo(o);
                    break;
                case ImageMode.CMYK:
                    // cmyk2rgb: no ink (0) is white; each colour is scaled by the black's complement.
                    int notBlack = 255 - p[3];
                    for (int c = 0; c < 3; c++)
                    {
                        o[c] = (byte)Math.Clamp(notBlack - PillowResize.MulDiv255(p[c], notBlack), 0, 255);
                    }
                    break;
            }
        }
        return rgba;
    }

    /// <summary>
    /// An index past the palette's end reads Pillow's initial palette, the grey ramp (i, i, i):
    /// putpalette overwrites only as many entries as it is given.
    /// </summary>
    private static void PaletteColour(byte[] palette, byte index, Span<byte> rgba)
    {
        if (index * 3 < palette.Length)
        {
            palette.AsSpan(index * 3, 3).CopyTo(rgba);
        }
        else
        {
            rgba[0] = rgba[1] = rgba[2] = index;
        }
    }

    /// <summary>
    /// AlphaComposite.c with an opaque white destination (integer blend with 7 extra bits, divisions
    /// by 255 rounded), then RGB.
    /// </summary>
    private static Raster CompositeOverWhite(byte[] rgba, int width, int height)
    {
        var rgb = new byte[width * height * 3];
        for (int p = 0, q = 0; p < rgba.Length; p += 4, q += 3)
        {
            uint alpha = rgba[p + 3];
            if (alpha == 0)
            {
                rgb.AsSpan(q, 3).Fill(White);
                continue;
            }
            if (alpha == 255)
            {
                // The blend below returns the source exactly for every value at full alpha.
                rgba.AsSpan(p, 3).CopyTo(rgb.AsSpan(q, 3));
                continue;
            }
            const uint destinationAlpha = 255;
            uint blend = destinationAlpha * (255 - alpha);
            uint outAlpha255 = alpha * 255 + blend;
            uint coef1 = alpha * 255 * 255 * (1u << CompositePrecisionBits) / outAlpha255;
            uint coef2 = 255 * (1u << CompositePrecisionBits) - coef1;
            for (int c = 0; c < 3; c++)
            {
                uint sum = rgba[p + c] * coef1 + White * coef2 + (0x80u << CompositePrecisionBits);
                rgb[q + c] = (byte)(ShiftForDiv255(sum) >> CompositePrecisionBits);
            }
        }
        return new Raster(width, height, 3, rgb);
    }

    private static uint ShiftForDiv255(uint a) => ((a >> 8) + a) >> 8;
}
