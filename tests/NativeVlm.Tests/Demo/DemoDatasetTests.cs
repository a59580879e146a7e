using DuckDB.NET.Data;
using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Demo;
using NativeVlm.Tests.Data;
using NativeVlm.Vision;
using Xunit;

namespace NativeVlm.Tests.Demo;

/// <summary>
/// The demo's synthetic preference data, read back as any Hugging Face rlaif-v dataset is read: the
/// splits found by datasets' file patterns, the rows through PreferenceDataset and the sample builder of
/// the demo snapshot, the images through the repository's PNG decoder.
/// </summary>
public sealed class DemoDatasetTests : IDisposable
{
    private const int TrainPairs = 40, TestPairs = 12, Seed = 5;

    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Dataset => _dir.Path("dataset");

    private static async Task<List<T>> ToListAsync<T>(IAsyncEnumerable<T> items)
    {
        var list = new List<T>();
        await foreach (T item in items)
        {
            list.Add(item);
        }
        return list;
    }

    [Fact]
    public async Task The_folder_has_a_train_and_a_test_split_in_the_sharded_layout()
    {
        await DemoDataset.CreateAsync(Dataset, TrainPairs, TestPairs, Seed);

        IReadOnlyDictionary<string, IReadOnlyList<string>> splits = DataFiles.FindSplits(Dataset);

        Assert.Equal(["test", "train"], splits.Keys.Order());
        Assert.Equal([Path.Combine(Dataset, "data", "train-00000-of-00001.parquet")], splits["train"]);
        Assert.Equal([Path.Combine(Dataset, "data", "test-00000-of-00001.parquet")], splits["test"]);
    }

    [Theory]
    [InlineData("train", TrainPairs)]
    [InlineData("test", TestPairs)]
    public async Task Every_row_reads_back_with_the_question_the_answers_and_the_pixels_drawn(string split, int count)
    {
        await DemoDataset.CreateAsync(Dataset, TrainPairs, TestPairs, Seed);
        (IReadOnlyList<DemoPair> train, IReadOnlyList<DemoPair> test) = DemoDataset.Generate(TrainPairs, TestPairs, Seed);
        IReadOnlyList<DemoPair> expected = split == "train" ? train : test;

        var summary = new DatasetSummary();
        List<PreferenceRow> rows = await ToListAsync(
            PreferenceDataset.ReadAsync(await ParquetSplit.OpenAsync(Dataset, split), BadRowPolicy.Strict, summary));

        Assert.Equal(count, rows.Count);
        Assert.Equal(0, summary.RowsSkipped);
        for (int i = 0; i < count; i++)
        {
            PreferenceRow row = rows[i];
            ChatMessage prompt = Assert.Single(row.Prompt);
            Assert.Equal("user", prompt.Role);
            Assert.Equal([ContentItem.ImagePlaceholder, ContentItem.FromText("What colour is the shape?")], prompt.Content);
            AssertAssistantAnswer(expected[i].Chosen.Answer, row.Chosen);
            AssertAssistantAnswer(expected[i].Rejected.Answer, row.Rejected);
            DatasetImage image = Assert.Single(row.Images);
            Assert.Null(image.Path);
            DecodedImage decoded = PngDecoder.Decode(image.Bytes, $"row {i}", maxPixels: 1_000_000);
            Assert.Equal(ImageMode.RGB, decoded.Mode);
            Assert.Equal(expected[i].Picture.Draw().Pixels, decoded.Pixels.Pixels);
        }
    }

    [Fact]
    public async Task DuckDb_reads_the_hugging_face_column_types_values_and_features()
    {
        await DemoDataset.CreateAsync(Dataset, TrainPairs, TestPairs, Seed);
        (IReadOnlyList<DemoPair> train, _) = DemoDataset.Generate(TrainPairs, TestPairs, Seed);
        string file = Path.Combine(Dataset, DemoDataset.TrainFile).Replace("'", "''");
        using var connection = new DuckDBConnection("Data Source=:memory:");
        connection.Open();
        using DuckDBCommand command = connection.CreateCommand();

        // DuckDB, an engine independent of Parquet.Net, decodes the nested levels; its SQL types are the
        // ones DuckDbParquet writes HF-layout files with.
        command.CommandText = $"""
            SELECT typeof(chosen), typeof(rejected), typeof(prompt), typeof(images),
                   typeof(NULL::{DuckDbParquet.MessagesType}), typeof(NULL::{DuckDbParquet.ImagesType})
            FROM '{file}' LIMIT 1
            """;
        using (DuckDBDataReader reader = command.ExecuteReader())
        {
            Assert.True(reader.Read());
            Assert.Equal([reader.GetString(4), reader.GetString(4), reader.GetString(4), reader.GetString(5)], Enumerable.Range(0, 4).Select(reader.GetString));
        }

        command.CommandText = $"SELECT to_json(chosen)::VARCHAR, to_json(rejected)::VARCHAR, to_json(prompt)::VARCHAR, len(images), hex(images[1].bytes), images[1].path FROM '{file}'";
        using (DuckDBDataReader reader = command.ExecuteReader())
        {
            foreach (DemoPair pair in train)
            {
                Assert.True(reader.Read());
                Assert.Equal($$"""[{"content":[{"text":"{{pair.Chosen.Answer}}","type":"text"}],"role":"assistant"}]""", reader.GetString(0));
                Assert.Equal($$"""[{"content":[{"text":"{{pair.Rejected.Answer}}","type":"text"}],"role":"assistant"}]""", reader.GetString(1));
                Assert.Equal(
                    """[{"content":[{"text":null,"type":"image"},{"text":"What colour is the shape?","type":"text"}],"role":"user"}]""", reader.GetString(2));
                Assert.Equal(1L, Convert.ToInt64(reader.GetValue(3)));
                Assert.Equal(Convert.ToHexString(PngEncoder.EncodeRgb(pair.Picture.Draw())), reader.GetString(4));
                Assert.True(reader.IsDBNull(5));
            }
            Assert.False(reader.Read());
        }

        command.CommandText = $"SELECT decode(value) FROM parquet_kv_metadata('{file}') WHERE decode(key) = 'huggingface'";
        string features = (string)command.ExecuteScalar()!;
        Assert.StartsWith("""{"info": {"features": {"chosen": [{"content": [{"text": {"dtype": "string", "_type": "Value"}""", features);
        Assert.Contains("\"images\": {\"feature\": {\"_type\": \"Image\"}, \"_type\": \"Sequence\"}", features);
    }

    private static void AssertAssistantAnswer(string answer, IReadOnlyList<ChatMessage> completion)
    {
        ChatMessage message = Assert.Single(completion);
        Assert.Equal("assistant", message.Role);
        Assert.Equal([ContentItem.FromText(answer)], message.Content);
    }

    [Fact]
    public async Task The_chosen_answer_names_the_colour_at_the_shape_centre_and_the_rejected_one_another()
    {
        await DemoDataset.CreateAsync(Dataset, TrainPairs, TestPairs, Seed);
        var summary = new DatasetSummary();

        List<PreferenceRow> rows = await ToListAsync(
            PreferenceDataset.ReadAsync(await ParquetSplit.OpenAsync(Dataset, "train"), BadRowPolicy.Strict, summary));

        var answers = ShapeColour.Palette.ToDictionary(colour => colour.Answer);
        foreach (PreferenceRow row in rows)
        {
            ShapeColour chosen = answers[Assert.Single(row.Chosen).Text];
            ShapeColour rejected = answers[Assert.Single(row.Rejected).Text];
            Assert.NotEqual(chosen, rejected);
            Raster pixels = PngDecoder.Decode(row.Images[0].Bytes, "row", maxPixels: 1_000_000).Pixels;
            Assert.Equal((64, 64), (pixels.Width, pixels.Height));
            // Every pixel is the chosen colour (the shape) or the near-grey background, and the shape
            // covers at least a small square's worth of them.
            int shapePixels = 0;
            for (int p = 0; p < pixels.Pixels.Length; p += 3)
            {
                (byte r, byte g, byte b) = (pixels.Pixels[p], pixels.Pixels[p + 1], pixels.Pixels[p + 2]);
                if ((r, g, b) == (chosen.R, chosen.G, chosen.B))
                {
                    shapePixels++;
                }
                else
                {
                    Assert.True(Math.Max(r, Math.Max(g, b)) - Math.Min(r, Math.Min(g, b)) <= 24, $"pixel ({r}, {g}, {b}) is neither the shape nor grey");
                }
            }
            Assert.True(shapePixels >= 100, $"only {shapePixels} pixels of the shape");
        }
        // Each colour is among the chosen answers and among the rejected ones.
        Assert.Equal(4, rows.Select(row => row.Chosen[0].Text).Distinct().Count());
        Assert.Equal(4, rows.Select(row => row.Rejected[0].Text).Distinct().Count());
    }

    [Fact]
    public async Task The_demo_snapshot_turns_every_row_into_a_dpo_sample_with_one_image()
    {
        DemoSnapshot.Create(_dir.Path("model"), Seed);
        await DemoDataset.CreateAsync(Dataset, TrainPairs, TestPairs, Seed);
        VlmProcessor processor = VlmProcessor.Load(_dir.Path("model"));
        var summary = new DatasetSummary();

        List<DpoSample> samples = await ToListAsync(TrainingSamples.ReadDpoAsync(
            new SampleBuilder(processor, new SampleLimits()), [Dataset], "train", BadRowPolicy.Strict, summary));

        Assert.Equal(TrainPairs, samples.Count);
        Assert.Equal((TrainPairs, 0L), (summary.RowsRead, summary.RowsSkipped));
        Assert.All(samples, sample =>
        {
            Assert.Equal(1, sample.Images!.Frames);
            Assert.Equal(processor.Prompt.ImageSeqLen, sample.PromptIds.Count(id => id == processor.ImageTokenId));
            Assert.Equal(processor.EosTokenId, sample.ChosenIds[^1]);
        });
    }
}
