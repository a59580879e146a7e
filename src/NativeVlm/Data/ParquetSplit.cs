using Parquet;

namespace NativeVlm.Data;

/// <summary>Rows [Start, Start + Count) of one parquet file, 0-based inside the file.</summary>
public sealed record ParquetFileRows(string FilePath, long Start, long Count)
{
    public long End => Start + Count;
}

/// <summary>
/// The parquet rows a split specification selects, in reading order: which files, and which rows of
/// each. Opening reads only the files' footers (row counts); rows are read later, a row group at a time.
/// </summary>
public sealed class ParquetSplit
{
    private ParquetSplit(SplitSelection selection, IReadOnlyList<ParquetFileRows> files)
    {
        Selection = selection;
        Files = files;
    }

    public SplitSelection Selection { get; }

    /// <summary>The file ranges to read, in order; a file appears once per slice that reaches it.</summary>
    public IReadOnlyList<ParquetFileRows> Files { get; }

    public long RowCount => Files.Sum(range => range.Count);

    /// <summary>
    /// Selects <paramref name="split"/> (e.g. <c>train[:6%]</c>) from one parquet file (its only split
    /// is "train", as for <c>load_dataset("parquet", data_files=file)</c>) or from a folder laid out
    /// as a Hugging Face dataset (see <see cref="DataFiles"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The split does not parse, names a split the data lacks, or selects no row.</exception>
    /// <exception cref="DatasetException">A file is not readable parquet.</exception>
    public static Task<ParquetSplit> OpenAsync(string path, string split = "train", CancellationToken cancellationToken = default)
    {
        if (File.Exists(path))
        {
            return OpenFilesAsync([path], split, cancellationToken);
        }
        IReadOnlyDictionary<string, IReadOnlyList<string>> files = DataFiles.FindSplits(path);
        return SelectAsync(path, files, SplitSelection.Parse(split), cancellationToken);
    }

    /// <summary>Selects <paramref name="split"/> from files that together are the split "train", read in the given order.</summary>
    public static Task<ParquetSplit> OpenFilesAsync(IReadOnlyList<string> filePaths, string split = "train", CancellationToken cancellationToken = default)
    {
        if (filePaths.Count == 0)
        {
            throw new ArgumentException("no parquet file given", nameof(filePaths));
        }
        var files = new Dictionary<string, IReadOnlyList<string>> { ["train"] = filePaths };
        return SelectAsync(string.Join(", ", filePaths), files, SplitSelection.Parse(split), cancellationToken);
    }

    private static async Task<ParquetSplit> SelectAsync(
        string source, IReadOnlyDictionary<string, IReadOnlyList<string>> filesBySplit, SplitSelection selection, CancellationToken cancellationToken)
    {
        SplitSlice? unknown = selection.Slices.FirstOrDefault(slice => !filesBySplit.ContainsKey(slice.Split));
        if (unknown is not null)
        {
            throw new ArgumentException(
                $"split '{selection}': {source} has no split '{unknown.Split}'; its splits are {string.Join(", ", filesBySplit.Keys)}");
        }
        var rowCounts = new Dictionary<string, long>();
        foreach (string file in selection.Slices.SelectMany(slice => filesBySplit[slice.Split]).Distinct())
        {
            rowCounts[file] = await CountRowsAsync(file, cancellationToken).ConfigureAwait(false);
        }

        var ranges = new List<ParquetFileRows>();
        foreach (SplitSlice slice in selection.Slices)
        {
            IReadOnlyList<string> files = filesBySplit[slice.Split];
            (long start, long end) = slice.Resolve(files.Sum(file => rowCounts[file]));
            long fileStart = 0;
            foreach (string file in files)
            {
                long fileEnd = fileStart + rowCounts[file];
                long from = Math.Max(start, fileStart);
                long to = Math.Min(end, fileEnd);
                if (from < to)
                {
                    ranges.Add(new ParquetFileRows(file, from - fileStart, to - from));
                }
                fileStart = fileEnd;
            }
        }
        if (ranges.Count == 0)
        {
            throw new ArgumentException($"split '{selection}' selects no row of {source}");
        }
        return new ParquetSplit(selection, ranges);
    }

    private static async Task<long> CountRowsAsync(string file, CancellationToken cancellationToken)
    {
        ParquetReader reader = await ParquetRows.OpenReaderAsync(file, cancellationToken).ConfigureAwait(false);
        await using (reader.ConfigureAwait(false))
        {
            try
            {
                return reader.RowGroups.Sum(rowGroup => rowGroup.RowCount);
            }
            catch (Exception e) when (ParquetRows.IsReadFailure(e))
            {
                throw new DatasetException(file, null, $"not a readable parquet file (its row groups cannot be read: {e.Message})", e);
            }
        }
    }
}
