using Parquet;
using Parquet.Schema;
using Parquet.Serialization;

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
/// the answers apart. Written as Hugging Face's rlaif-v parquet (as datasets and pyarrow write
/// HuggingFaceH4/rlaif-v_formatted): columns chosen, rejected, images, prompt; messages are
/// list&lt;struct&lt;content: list&lt;struct&lt;text, type&gt;&gt;, role&gt;&gt;, images list&lt;struct&lt;bytes, path&gt;&gt;
/// holding PNG bytes; 3-level lists named "list"/"element" (pyarrow ≥ 13); the datasets features
/// under the file metadata's "huggingface" key.
/// </summary>
public static class DemoDataset
{
    public const string Question = "What colour is the shape?";

    /// <summary>The split files, named as datasets' sharded pattern <c>data/{split}-00000-of-00001</c> makes them splits.</summary>
    public static readonly string TrainFile = Path.Combine("data", "train-00000-of-00001.parquet");

    public static readonly string TestFile = Path.Combine("data", "test-00000-of-00001.parquet");

    private const string ElementName = "element";
    private const string ValueString = """{"dtype": "string", "_type": "Value"}""";
    private const string MessagesFeature = $$"""[{"content": [{"text": {{ValueString}}, "type": {{ValueString}}}], "role": {{ValueString}} }]""";
    private const string ImagesFeature = """{"feature": {"_type": "Image"}, "_type": "Sequence"}""";

    private const string Features = "{\"info\": {\"features\": {\"chosen\": " + MessagesFeature + ", \"rejected\": " + MessagesFeature
        + ", \"images\": " + ImagesFeature + ", \"prompt\": " + MessagesFeature + "}}}";

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

    private static async Task WriteAsync(string path, IReadOnlyList<DemoPair> pairs, CancellationToken cancellationToken)
    {
        var schema = new ParquetSchema(MessagesField("chosen"), MessagesField("rejected"), ImagesField(), MessagesField("prompt"));
        List<IDictionary<string, object?>> rows = pairs.Select(pair => (IDictionary<string, object?>)new Dictionary<string, object?>
        {
            ["chosen"] = AssistantAnswer(pair.Chosen),
            ["rejected"] = AssistantAnswer(pair.Rejected),
            // Parquet.Net's untyped serializer takes binary values as ReadOnlyMemory<byte>; datasets stores
            // an image given as bytes with a null path.
            ["images"] = new List<Dictionary<string, object?>>
            {
                new() { ["bytes"] = (ReadOnlyMemory<byte>)PngEncoder.EncodeRgb(pair.Picture.Draw()), ["path"] = null },
            },
            ["prompt"] = new List<Dictionary<string, object?>>
            {
                Message("user", [("image", null), ("text", Question)]),
            },
        }).ToList();
        await using FileStream stream = File.Create(path);
        await ParquetSerializer.SerializeUntypedAsync(rows, schema, stream,
            customMetadata: new Dictionary<string, string> { ["huggingface"] = Features }, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    private static List<Dictionary<string, object?>> AssistantAnswer(ShapeColour colour) => [Message("assistant", [("text", colour.Answer)])];

    private static Dictionary<string, object?> Message(string role, (string Type, string? Text)[] content) => new()
    {
        ["content"] = content.Select(item => new Dictionary<string, object?> { ["text"] = item.Text, ["type"] = item.Type }).ToList(),
        ["role"] = role,
    };

    private static ListField MessagesField(string name) =>
        new(name, new StructField(ElementName,
            new ListField("content", new StructField(ElementName, new DataField<string>("text"), new DataField<string>("type"))),
            new DataField<string>("role")));

    private static ListField ImagesField() =>
        new("images", new StructField(ElementName, new DataField<byte[]>("bytes"), new DataField<string>("path")));
}
