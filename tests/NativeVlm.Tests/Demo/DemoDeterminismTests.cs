using System.Diagnostics;
using NativeVlm.Demo;
using Xunit;

namespace NativeVlm.Tests.Demo;

/// <summary>The demo's generated files depend on the seed alone, and take little time to make.</summary>
public sealed class DemoDeterminismTests : IDisposable
{
    /// <summary>The demo's sizes: its whole preparation must stay a small part of a minutes-long run.</summary>
    private const int TrainPairs = 512, TestPairs = 64;

    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private async Task<TimeSpan> CreateAsync(string name, int seed)
    {
        var clock = Stopwatch.StartNew();
        DemoSnapshot.Create(_dir.Path(Path.Combine(name, "model")), seed);
        await DemoDataset.CreateAsync(_dir.Path(Path.Combine(name, "dataset")), TrainPairs, TestPairs, seed);
        return clock.Elapsed;
    }

    /// <summary>Every file under the folder by relative path, with its bytes.</summary>
    private SortedDictionary<string, byte[]> Files(string name)
    {
        string root = _dir.Path(name);
        return new SortedDictionary<string, byte[]>(
            Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).ToDictionary(path => Path.GetRelativePath(root, path), File.ReadAllBytes),
            StringComparer.Ordinal);
    }

    [Fact]
    public async Task The_same_seed_writes_byte_identical_files_in_seconds()
    {
        TimeSpan first = await CreateAsync("first", seed: 11);
        TimeSpan second = await CreateAsync("second", seed: 11);

        SortedDictionary<string, byte[]> a = Files("first"), b = Files("second");
        Assert.Equal(
            [
                Path.Combine("dataset", "data", "test-00000-of-00001.parquet"), Path.Combine("dataset", "data", "train-00000-of-00001.parquet"),
                Path.Combine("model", "config.json"), Path.Combine("model", "model.safetensors"), Path.Combine("model", "preprocessor_config.json"),
                Path.Combine("model", "processor_config.json"), Path.Combine("model", "tokenizer.json"), Path.Combine("model", "tokenizer_config.json"),
            ],
            a.Keys);
        Assert.Equal(a.Keys, b.Keys);
        Assert.All(a.Keys, file => Assert.True(a[file].AsSpan().SequenceEqual(b[file]), $"{file} differs between two runs with the same seed"));
        // The first run includes the JIT's warm-up; the second is the steady cost.
        Assert.True(first < TimeSpan.FromSeconds(30) && second < TimeSpan.FromSeconds(10), $"generation took {first.TotalSeconds:F1} s, then {second.TotalSeconds:F1} s");
    }

    [Fact]
    public async Task Another_seed_gives_other_weights_and_other_pairs_but_the_same_configuration()
    {
        await CreateAsync("first", seed: 11);
        await CreateAsync("other", seed: 12);

        SortedDictionary<string, byte[]> a = Files("first"), b = Files("other");
        foreach (string file in a.Keys)
        {
            bool same = a[file].AsSpan().SequenceEqual(b[file]);
            bool seeded = file.EndsWith(".safetensors", StringComparison.Ordinal) || file.EndsWith(".parquet", StringComparison.Ordinal);
            Assert.True(same != seeded, seeded ? $"{file} is the same for two seeds" : $"{file} changed with the seed");
        }
    }
}
