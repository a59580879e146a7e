namespace NativeVlm.Vision;

/// <summary>Pillow's image modes that the decoders produce, with Pillow's meaning of each.</summary>
public enum ImageMode
{
    /// <summary>Pillow's "1": one bit per pixel, held as 0 or 1 (what numpy shows of such an image).</summary>
    Bilevel,

    /// <summary>8-bit greyscale.</summary>
    L,

    /// <summary>8-bit greyscale and alpha.</summary>
    LA,

    /// <summary>8-bit palette indices, with the palette beside them.</summary>
    P,

    RGB,

    /// <summary>RGB and straight (not premultiplied) alpha.</summary>
    RGBA,

    /// <summary>Cyan, magenta, yellow, black as Pillow holds them: 0 = no ink (Adobe JPEGs are stored inverted).</summary>
    CMYK,
}

public static class ImageModes
{
    public static int Channels(this ImageMode mode) => mode switch
    {
        ImageMode.Bilevel or ImageMode.L or ImageMode.P => 1,
        ImageMode.LA => 2,
        ImageMode.RGB => 3,
        ImageMode.RGBA or ImageMode.CMYK => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown image mode"),
    };

    /// <summary>The mode's name as Pillow spells it ("1", "L", "RGBA", ...).</summary>
    public static string PillowName(this ImageMode mode) => mode == ImageMode.Bilevel ? "1" : mode.ToString();
}
