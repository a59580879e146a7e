using NativeVlm.Vision;

namespace NativeVlm.Demo;

public enum ShapeKind
{
    Circle,
    Square,
    Triangle,
}

/// <summary>A shape colour of the demo and the answer that names it.</summary>
public sealed record ShapeColour(string Name, byte R, byte G, byte B)
{
    /// <summary>The assistant's answer naming this colour, e.g. "Red.".</summary>
    public string Answer => $"{Name}.";

    /// <summary>
    /// Saturated colours, each far from every other and from any near-grey background (a channel spread
    /// of at least 170 against at most 24), so that the colour is in the pixels beyond doubt.
    /// </summary>
    public static IReadOnlyList<ShapeColour> Palette { get; } =
    [
        new("Red", 220, 30, 30),
        new("Green", 30, 200, 50),
        new("Blue", 30, 70, 220),
        new("Yellow", 235, 205, 30),
    ];
}

/// <summary>
/// One demo image: a filled shape of one palette colour on a near-grey background. <see cref="Size"/> is
/// the circle's radius, the square's half side, and the triangle's half height (apex above the centre,
/// base below it, as wide as it is high); the centre pixel is inside every shape.
/// </summary>
public sealed record ShapePicture(ShapeKind Shape, ShapeColour Colour, byte[] Background, int CenterX, int CenterY, int Size)
{
    /// <summary>The side of every demo image: one 64-pixel frame, the demo model's image_size.</summary>
    public const int Side = 64;

    /// <summary>
    /// Shapes cover 12–66 % of the picture: the colour reaches the answer through attention spread over every
    /// token, so a small shape's colour is a faint signal; at sizes 10–20 (3–30 %) 128 DPO steps reached only
    /// 0.92 held-out reward accuracy, at these 64 steps reach 1.0.
    /// </summary>
    private const int MinSize = 16, MaxSize = 26;

    /// <summary>A random shape, colour, background and placement, the shape wholly inside the image.</summary>
    public static ShapePicture Random(Random random)
    {
        var shape = (ShapeKind)random.Next(3);
        ShapeColour colour = ShapeColour.Palette[random.Next(ShapeColour.Palette.Count)];
        int grey = random.Next(48, 209);
        byte[] background = [.. Enumerable.Range(0, 3).Select(_ => (byte)(grey + random.Next(-12, 13)))];
        int size = random.Next(MinSize, MaxSize + 1);
        int centerX = random.Next(size, Side - size), centerY = random.Next(size, Side - size);
        return new ShapePicture(shape, colour, background, centerX, centerY, size);
    }

    public bool Covers(int x, int y)
    {
        int dx = x - CenterX, dy = y - CenterY;
        return Shape switch
        {
            ShapeKind.Circle => dx * dx + dy * dy <= Size * Size,
            ShapeKind.Square => Math.Abs(dx) <= Size && Math.Abs(dy) <= Size,
            // Rows from the apex (dy = −Size) widen by one pixel per two rows, to ±Size at the base.
            ShapeKind.Triangle => dy >= -Size && dy <= Size && 2 * Math.Abs(dx) <= dy + Size,
            _ => throw new InvalidOperationException($"unknown shape {Shape}"),
        };
    }

    /// <summary>The picture as a <see cref="Side"/> × <see cref="Side"/> RGB raster.</summary>
    public Raster Draw()
    {
        var pixels = new byte[Side * Side * 3];
        for (int y = 0; y < Side; y++)
        {
            for (int x = 0; x < Side; x++)
            {
                int i = (y * Side + x) * 3;
                if (Covers(x, y))
                {
                    (pixels[i], pixels[i + 1], pixels[i + 2]) = (Colour.R, Colour.G, Colour.B);
                }
                else
                {
                    Background.CopyTo(pixels, i);
                }
            }
        }
        return new Raster(Side, Side, 3, pixels);
    }
}
