using NativeVlm.Data;
using Parquet;

namespace NativeVlm.Tests.Data;

/// <summary>Reading helpers shared by the dataset tests.</summary>
internal static class DatasetTestReads
{
    public static async Task<List<T>> ToListAsync<T>(IAsyncEnumerable<T> rows)
    {
        var list = new List<T>();
        await foreach (T row in rows)
        {
            list.Add(row);
        }
        return list;
    }

    /// <summary>Rows read in skip mode, with the warnings in the order they came.</summary>
    public static async Task<(List<T> Rows, List<BadRow> Warnings, DatasetSummary Summary)> ReadSkippingAsync<T>(
        Func<BadRowPolicy, DatasetSummary, IAsyncEnumerable<T>> read)
    {
        var warnings = new List<BadRow>();
        var summary = new DatasetSummary();
        List<T> rows = await ToListAsync(read(BadRowPolicy.SkipAndWarn(warnings.Add), summary));
        return (rows, warnings, summary);
    }

    public static async Task<int> RowGroupCountAsync(string path)
    {
        await using ParquetReader reader = await ParquetReader.CreateAsync(path);
        return reader.RowGroupCount;
    }
}
