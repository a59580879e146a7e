using NativeVlm.Data;

namespace NativeVlm.Demo;

/// <summary>One synthetic preference pair: the picture, the right colour (chosen) and a wrong one (rejected).</summary>
public sealed record DemoPair(ShapePicture Picture, ShapeColour Rejected)
{
    public ShapeColour Chosen => Picture.Colour;
}

/// <summary>
/// The demo's synthetic preference dataset: each row asks "What colour is the shape?" about a picture
/// of a coloured shape (<see cref="ShapePicture"/>); chosen names its colour, rejected another palette
/// colour. Every colour is chosen and rejected equally often in expectation, so only the image tells
/// the answers apart. Written as Hugging Face's rlaif-v parquet by <see cref="PreferenceParquetWriter"/>,
/// each row's one image as PNG bytes.
/// </summary>
public static class DemoDataset
{
    public const string Question = "What colour is the shape?";

    /// <summary>The split files, named as datasets' sharded pattern <c>data/{split}-00000-of-00001</c> makes them splits.</summary>
    public static readonly string TrainFile = Path.Combine("data", "train-00000-of-00001.parquet");

    public static readonly string TestFile = Path.Combine("data", "test-00000-of-00001.parquet");

    /// <summary>
    /// The pairs of both splits, train first, from one generator seeded with <paramref name="seed"/>: the
    /// same seed gives the same pairs, and the test pairs are fresh draws, not copies of train rows.
    /// </summary>
    public static (IReadOnlyList<DemoPair> Train, IReadOnlyList<DemoPair> Test) Generate(int trainPairs, int testPairs, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(trainPairs);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(testPairs);
        var random = new Random(seed);
        List<DemoPair> Draw(int count) => Enumerable.Range(0, count).Select(_ => NextPair(random)).ToList();
        List<DemoPair> train = Draw(trainPairs);
        return (train, Draw(testPairs));
    }

    /// <summary>Writes <see cref="TrainFile"/> and <see cref="TestFile"/> under <paramref name="directory"/> (created if missing).</summary>
    public static async Task CreateAsync(string directory, int trainPairs, int testPairs, int seed, CancellationToken cancellationToken = default)
    {
        (IReadOnlyList<DemoPair> train, IReadOnlyList<DemoPair> test) = Generate(trainPairs, testPairs, seed);
        Directory.CreateDirectory(Path.Combine(directory, "data"));
        await WriteAsync(Path.Combine(directory, TrainFile), train, cancellationToken).ConfigureAwait(false);
        await WriteAsync(Path.Combine(directory, TestFile), test, cancellationToken).ConfigureAwait(false);
    }

    private static DemoPair NextPair(Random random)
    {
        ShapePicture picture = ShapePicture.Random(random);
        List<ShapeColour> wrong = ShapeColour.Palette.Where(colour => colour != picture.Colour).ToList();
        return new DemoPair(picture, wrong[random.Next(wrong.Count)]);
    }

    private static Task WriteAsync(string path, IReadOnlyList<DemoPair> pairs, CancellationToken cancellationToken) =>
        PreferenceParquetWriter.WriteAsync(path, pairs.Select(pair => new PreferenceParquetWriter.Row(
            Prompt: [new ChatMessage("user", [ContentItem.ImagePlaceholder, ContentItem.FromText(Question)])],
            Chosen: AssistantAnswer(pair.Chosen),
            Rejected: AssistantAnswer(pair.Rejected),
            // datasets stores an image given as bytes with a null path.
            Images: [new DatasetImage(PngEncoder.EncodeRgb(pair.Picture.Draw()), Path: null)])).ToList(), cancellationToken);

    private static ChatMessage[] AssistantAnswer(ShapeColour colour) => [new ChatMessage("assistant", [ContentItem.FromText(colour.Answer)])];
}
