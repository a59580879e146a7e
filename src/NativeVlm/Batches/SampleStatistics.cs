using System.Globalization;

namespace NativeVlm.Batches;

/// <summary>Tokens and image tiles (frames, global images included) per kept sample, for the dry run's and training's summaries.</summary>
public sealed class SampleStatistics
{
    private readonly List<int> _tokens = [];
    private readonly List<int> _tiles = [];

    public int Count => _tokens.Count;

    public void Add(DpoSample sample) => Add(sample.TokenCount, sample.Images?.Frames ?? 0);

    public void Add(SftSample sample) => Add(sample.TokenCount, sample.Images?.Frames ?? 0);

    private void Add(int tokens, int tiles)
    {
        _tokens.Add(tokens);
        _tiles.Add(tiles);
    }

    /// <summary>"min 40, median 45, max 60"; the median of an even count is the mean of the middle two.</summary>
    public string Tokens => Describe(_tokens);

    public string Tiles => Describe(_tiles);

    private static string Describe(List<int> values)
    {
        if (values.Count == 0)
        {
            return "no sample";
        }
        int[] sorted = [.. values.Order()];
        int middle = sorted.Length / 2;
        double median = sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2.0;
        return string.Create(CultureInfo.InvariantCulture, $"min {sorted[0]}, median {median}, max {sorted[^1]}");
    }
}
