using System.Text.Json.Nodes;
using NativeVlm.Training;
using Xunit;

namespace NativeVlm.Tests.Training;

/// <summary>The hyperparameters of a fixture's train.json as TrainingArguments (num_warmup_steps is warmup_steps).</summary>
internal static class FixtureArguments
{
    public static TrainingArguments Read(string trainJson)
    {
        JsonObject hyper = JsonNode.Parse(File.ReadAllText(trainJson))!["hyperparameters"]!.AsObject();
        var args = new TrainingArguments();
        foreach (string name in new[]
                 {
                     "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "learning_rate", "adam_beta1",
                     "adam_beta2", "adam_epsilon", "weight_decay", "lr_scheduler_type", "max_grad_norm",
                 })
        {
            args.Set(name, hyper[name]!.ToString());
        }
        args.Set("warmup_steps", hyper["num_warmup_steps"]!.ToString());
        return args;
    }
}

/// <summary>Batches recorded by a fixture, one per micro-batch: sample indices [k·size, (k+1)·size) give batch k.</summary>
internal sealed class RecordedBatches<TBatch>(IReadOnlyList<TBatch> batches, int batchSize) : ITrainingData<TBatch>
{
    public int Count => batches.Count * batchSize;

    public TBatch Collate(IReadOnlyList<int> indices)
    {
        int k = indices[0] / batchSize;
        Assert.Equal(Enumerable.Range(k * batchSize, batchSize), indices);
        return batches[k];
    }
}

internal sealed class RecordingLog : ITrainingLog
{
    public List<(long Step, double Epoch, IReadOnlyDictionary<string, double> Metrics)> Entries { get; } = [];

    public List<string> Events { get; } = [];

    public void Log(long step, double epoch, IReadOnlyDictionary<string, double> metrics) => Entries.Add((step, epoch, metrics));

    public void Event(string message) => Events.Add(message);
}

internal sealed class TemporaryDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("nvlm-train-").FullName;

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

internal static class FixtureAssert
{
    public static void Close(IReadOnlyList<float> expected, IEnumerable<double> actual, double atol, double rtol, string what)
    {
        double[] got = actual.ToArray();
        Assert.Equal(expected.Count, got.Length);
        for (int i = 0; i < got.Length; i++)
        {
            double bound = atol + rtol * Math.Abs(expected[i]);
            Assert.True(Math.Abs(got[i] - expected[i]) <= bound, $"{what}[{i}]: expected {expected[i]:R}, got {got[i]:R} (bound {bound:G3})");
        }
    }
}
