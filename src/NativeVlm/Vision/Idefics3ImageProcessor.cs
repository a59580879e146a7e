namespace NativeVlm.Vision;

/// <summary>
/// transformers' Idefics3ImageProcessor.preprocess (v4.46.3; v4.51.3 for the L, P and RGBA inputs
/// that v4.46.3 rejects), bit for bit. Each image, as its uint8 array:
/// <list type="number">
/// <item>resize so that the longest edge is size.longest_edge (aspect kept, odd short side + 1);</item>
/// <item>split: resize both sides up to multiples of max_image_size, cut tiles row by row, and add the
/// whole image resized to one tile as the last frame; or, without splitting, resize to one tile;</item>
/// <item>convert each frame to RGB (<see cref="RgbConversion"/>);</item>
/// <item>x · rescale_factor in float64, stored as float32; then (x − mean) / std in float32;</item>
/// <item>pad every frame to the batch's largest, and every sample to the most frames, with zeros.</item>
/// </list>
/// Every resize is Pillow's on the array made a Pillow image again: 1 channel as mode P (so NEAREST),
/// 3 as RGB, 4 as RGBA (premultiplied), see <see cref="PillowResize"/>.
/// </summary>
public sealed class Idefics3ImageProcessor(Idefics3ImageProcessorConfig config)
{
    /// <summary>transformers' MAX_IMAGE_SIZE: no side grows past it in the first resize.</summary>
    public const int MaxImageSide = 4096;

    public Idefics3ImageProcessorConfig Config { get; } = config;

    /// <summary>One image's array between steps, with the palette that convert_to_rgb applies to it.</summary>
    private sealed record Frame(string Origin, Raster Pixels, byte[]? Palette);

    /// <summary>Processes a batch: one list of images per sample.</summary>
    /// <param name="onResize">Called with every resize's output, in transformers' call order; for checks against its intermediates.</param>
    public ProcessedImages Process(IReadOnlyList<IReadOnlyList<DecodedImage>> samples, Action<Raster>? onResize = null)
    {
        if (samples.Count == 0 || samples.Any(s => s.Count == 0))
        {
            throw new ArgumentException("every sample needs at least one image", nameof(samples));
        }
        List<List<Frame>> images = samples.Select(sample => sample.Select(ToFrame).ToList()).ToList();

        if (Config.DoResize)
        {
            images = images.Select(sample => sample.Select(f =>
            {
                (int height, int width) = Config.LongestEdge is int longestEdge
                    ? ResizeOutputSize(f.Pixels.Height, f.Pixels.Width, longestEdge)
                    : Config.Size!.Value;
                return Resize(f, width, height, onResize);
            }).ToList()).ToList();
        }

        var rows = new List<IReadOnlyList<int>>();
        var cols = new List<IReadOnlyList<int>>();
        List<List<Frame>> frames;
        if (Config.DoImageSplitting)
        {
            images = images.Select(sample => sample.Select(f =>
            {
                (int height, int width) = VisionEncoderSize(f.Pixels.Height, f.Pixels.Width, Config.MaxImageSize);
                return Resize(f, width, height, onResize);
            }).ToList()).ToList();
            frames = [];
            foreach (List<Frame> sample in images)
            {
                var sampleFrames = new List<Frame>();
                var sampleRows = new List<int>();
                var sampleCols = new List<int>();
                foreach (Frame image in sample)
                {
                    (List<Frame> split, int splitRows, int splitCols) = Split(image, onResize);
                    sampleFrames.AddRange(split);
                    sampleRows.Add(splitRows);
                    sampleCols.Add(splitCols);
                }
                frames.Add(sampleFrames);
                rows.Add(sampleRows);
                cols.Add(sampleCols);
            }
        }
        else
        {
            frames = images.Select(sample => sample.Select(f => Resize(f, Config.MaxImageSize, Config.MaxImageSize, onResize)).ToList()).ToList();
            rows.AddRange(images.Select(sample => new int[sample.Count]));
            cols.AddRange(images.Select(sample => new int[sample.Count]));
        }

        List<List<Raster>> rgb = frames.Select(sample => sample.Select(f => RgbConversion.ToRgb(f.Pixels, f.Palette)).ToList()).ToList();
        return Pad(rgb, rows, cols);
    }

    /// <summary>
    /// The array transformers makes of a Pillow image (<c>np.array(image)</c>): L and P indices with
    /// one channel, mode 1 as 0 and 1, RGB, RGBA, and CMYK's four channels, which the processor then
    /// takes for RGBA as it takes any 4-channel array.
    /// </summary>
    private static Frame ToFrame(DecodedImage image) => image.Mode switch
    {
        ImageMode.LA => throw new ImageInputException(image.Origin,
            "mode LA: transformers' Idefics3ImageProcessor cannot infer the channel dimension of 2-channel images and raises"),
        _ => new Frame(image.Origin, image.Pixels, image.Palette),
    };

    /// <summary>Idefics3ImageProcessor.resize: the array as a Pillow image of the mode its channels give, resized by Pillow.</summary>
    private Frame Resize(Frame frame, int width, int height, Action<Raster>? onResize)
    {
        if (width < 1 || height < 1)
        {
            throw new ImageInputException(frame.Origin,
                $"{frame.Pixels.Width}x{frame.Pixels.Height} would be resized to {width}x{height}, which Pillow refuses");
        }
        ImageMode mode = frame.Pixels.Channels switch
        {
            1 => ImageMode.P,
            3 => ImageMode.RGB,
            4 => ImageMode.RGBA,
            int channels => throw new ImageInputException(frame.Origin, $"{channels} channels: the processor takes 1, 3 or 4"),
        };
        Raster resized = PillowResize.Resize(frame.Pixels, mode, width, height, Config.Resample);
        onResize?.Invoke(resized);
        return frame with { Pixels = resized };
    }

    /// <summary>
    /// The first resize's (height, width): the longest edge becomes <paramref name="longestEdge"/>
    /// and the other keeps the aspect ratio, truncated, plus one when odd (at least 1); then no side
    /// may pass <see cref="MaxImageSide"/>. Python's float division and int() truncation.
    /// </summary>
    public static (int Height, int Width) ResizeOutputSize(int height, int width, int longestEdge)
    {
        double aspectRatio = (double)width / height;
        if (width >= height)
        {
            width = longestEdge;
            height = (int)(width / aspectRatio);
            height += height % 2;
        }
        else
        {
            height = longestEdge;
            width = (int)(height * aspectRatio);
            width += width % 2;
        }
        height = Math.Max(height, 1);
        width = Math.Max(width, 1);

        aspectRatio = (double)width / height;
        if (width >= height && width > MaxImageSide)
        {
            width = MaxImageSide;
            height = (int)(width / aspectRatio);
        }
        else if (height > width && height > MaxImageSide)
        {
            height = MaxImageSide;
            width = (int)(height * aspectRatio);
        }
        return (Math.Max(height, 1), Math.Max(width, 1));
    }

    /// <summary>
    /// resize_for_vision_encoder's (height, width): the longer side rounded up to a multiple of
    /// <paramref name="tile"/>, the other derived from the aspect ratio and rounded up too.
    /// </summary>
    public static (int Height, int Width) VisionEncoderSize(int height, int width, int tile)
    {
        double aspectRatio = (double)width / height;
        if (width >= height)
        {
            width = CeilMultiple(width, tile);
            height = CeilMultiple((int)(width / aspectRatio), tile);
        }
        else
        {
            height = CeilMultiple(height, tile);
            width = CeilMultiple((int)(height * aspectRatio), tile);
        }
        return (height, width);
    }

    private static int CeilMultiple(int value, int tile) => (int)Math.Ceiling((double)value / tile) * tile;

    /// <summary>
    /// split_image: a frame larger than a tile is cut into ceil(h / tile) × ceil(w / tile) tiles row
    /// by row, followed by the whole frame resized to one tile; a frame that fits is kept alone, with
    /// 0 rows and 0 columns.
    /// </summary>
    private (List<Frame> Frames, int Rows, int Cols) Split(Frame image, Action<Raster>? onResize)
    {
        int tile = Config.MaxImageSize, height = image.Pixels.Height, width = image.Pixels.Width;
        if (height <= tile && width <= tile)
        {
            return ([image], 0, 0);
        }
        int rows = (int)Math.Ceiling((double)height / tile);
        int cols = (int)Math.Ceiling((double)width / tile);
        int tileHeight = (int)Math.Ceiling((double)height / rows);
        int tileWidth = (int)Math.Ceiling((double)width / cols);
        var frames = new List<Frame>();
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                int x0 = c * tileWidth, y0 = r * tileHeight;
                Raster crop = image.Pixels.Crop(x0, y0, Math.Min(x0 + tileWidth, width), Math.Min(y0 + tileHeight, height));
                frames.Add(image with { Pixels = crop });
            }
        }
        frames.Add(height != tile || width != tile ? Resize(image, tile, tile, onResize) : image);
        return (frames, rows, cols);
    }

    /// <summary>
    /// Rescale, normalise and pad, channels first: every frame is zero-padded at the bottom and right
    /// to the batch's largest height and width, every sample to the most frames with all-zero slots.
    /// </summary>
    private ProcessedImages Pad(List<List<Raster>> frames, List<IReadOnlyList<int>> rows, List<IReadOnlyList<int>> cols)
    {
        int batch = frames.Count;
        int slots = frames.Max(sample => sample.Count);
        int height = frames.SelectMany(s => s).Max(f => f.Height);
        int width = frames.SelectMany(s => s).Max(f => f.Width);
        int plane = height * width;
        var pixelValues = new float[checked(batch * slots * 3 * plane)];
        var mask = new byte[batch * slots * plane];
        float[][] valueOf = [NormalisedValues(0), NormalisedValues(1), NormalisedValues(2)];
        for (int b = 0; b < batch; b++)
        {
            for (int n = 0; n < frames[b].Count; n++)
            {
                Raster frame = frames[b][n];
                int slot = b * slots + n;
                for (int c = 0; c < 3; c++)
                {
                    Span<float> outPlane = pixelValues.AsSpan((slot * 3 + c) * plane, plane);
                    for (int y = 0; y < frame.Height; y++)
                    {
                        ReadOnlySpan<byte> inRow = frame.Pixels.AsSpan(y * frame.RowBytes, frame.RowBytes);
                        Span<float> outRow = outPlane.Slice(y * width, frame.Width);
                        for (int x = 0; x < outRow.Length; x++)
                        {
                            outRow[x] = valueOf[c][inRow[x * 3 + c]];
                        }
                    }
                }
                for (int y = 0; y < frame.Height; y++)
                {
                    mask.AsSpan(slot * plane + y * width, frame.Width).Fill(1);
                }
            }
        }
        return new ProcessedImages(pixelValues, [batch, slots, 3, height, width], mask, rows, cols);
    }

    /// <summary>
    /// What each byte value of channel <paramref name="channel"/> becomes. rescale:
    /// <c>image.astype(float64) * factor</c>, then float32; normalize: <c>(image − mean) / std</c>
    /// with mean and std as float32 arrays, so each operation rounds to float32 as numpy's does.
    /// </summary>
    private float[] NormalisedValues(int channel)
    {
        float mean = (float)Config.ImageMean[channel], std = (float)Config.ImageStd[channel];
        var values = new float[256];
        for (int value = 0; value < 256; value++)
        {
            float x = Config.DoRescale ? (float)(value * Config.RescaleFactor) : value;
            values[value] = Config.DoNormalize ? (x - mean) / std : x;
        }
        return values;
    }
}
