namespace NativeVlm.Vision;

/// <summary>
/// An image as Pillow's <c>Image.open(...)</c> holds it once loaded: its mode, its pixels
/// [height, width, channels of the mode] and, for mode P, the palette (RGB triples, 256 entries at
/// most). No colour management and no EXIF rotation, as Pillow applies neither on open.
/// </summary>
public sealed class DecodedImage
{
    public DecodedImage(string origin, ImageMode mode, Raster pixels, byte[]? palette = null)
    {
        Origin = origin;
        if (pixels.Channels != mode.Channels())
        {
            throw new ArgumentException($"mode {mode.PillowName()} has {mode.Channels()} channels, the pixels {pixels.Channels}", nameof(pixels));
        }
        if ((mode == ImageMode.P) != (palette is not null) || palette is not null && (palette.Length is 0 or > 768 || palette.Length % 3 != 0))
        {
            throw new ArgumentException("a palette (1 to 256 RGB triples) goes with mode P and only with it", nameof(palette));
        }
        Mode = mode;
        Pixels = pixels;
        Palette = palette;
    }

    /// <summary>Where the image came from (a file path, or a dataset file and row), for error messages.</summary>
    public string Origin { get; }

    public ImageMode Mode { get; }

    public Raster Pixels { get; }

    /// <summary>RGB triples for mode P; null otherwise.</summary>
    public byte[]? Palette { get; }

    public int Width => Pixels.Width;

    public int Height => Pixels.Height;
}
