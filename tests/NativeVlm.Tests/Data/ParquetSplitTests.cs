using NativeVlm.Data;
using Xunit;
using static NativeVlm.Tests.Data.DatasetTestReads;

namespace NativeVlm.Tests.Data;

/// <summary>
/// A snapshot with a split in several files: slices cross file and row-group boundaries exactly where
/// datasets puts them, files are read in name order, and each row keeps its own file and row.
/// </summary>
public class ParquetSplitTests
{
    /// <summary>data/train-0000k-of-00003.parquet hold rows 0–3, 4–6, 7–11; data/test-… rows 100–101; row groups of 2.</summary>
    private static readonly (string Name, int[] Ids)[] Shards =
    [
        ("data/train-00000-of-00003.parquet", [0, 1, 2, 3]),
        ("data/train-00001-of-00003.parquet", [4, 5, 6]),
        ("data/train-00002-of-00003.parquet", [7, 8, 9, 10, 11]),
        ("data/test-00000-of-00001.parquet", [100, 101]),
    ];

    private static async Task WriteSnapshotAsync(TempDirectory dir)
    {
        Directory.CreateDirectory(dir.Path("data"));
        // Written last to first: the order of reading must come from the names.
        foreach ((string name, int[] ids) in Shards.Reverse())
        {
            await NetParquet.WritePreferenceAsync(dir.Path(name), ids.Select(SampleRows.Pair), rowGroupSize: 2);
        }
    }

    /// <summary>Where each global id lies: its shard's path and its row inside that shard.</summary>
    private static RowLocation LocationOf(TempDirectory dir, int id)
    {
        (string name, int[] ids) = Shards.Single(shard => shard.Ids.Contains(id));
        return new RowLocation(dir.Path(name), Array.IndexOf(ids, id));
    }

    [Theory]
    [InlineData("train", new[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 })]
    [InlineData("train[:50%]", new[] { 0, 1, 2, 3, 4, 5 })]
    [InlineData("train[5:9]", new[] { 5, 6, 7, 8 })]
    [InlineData("train[-3:]", new[] { 9, 10, 11 })]
    [InlineData("train[:6%]", new[] { 0 })] // 0.72 rows → 1
    [InlineData("train[3:4]", new[] { 3 })]
    [InlineData("train[50%:]", new[] { 6, 7, 8, 9, 10, 11 })]
    [InlineData("test", new[] { 100, 101 })]
    [InlineData("test+train[:2]", new[] { 100, 101, 0, 1 })]
    [InlineData("train[10:]+train[:1]", new[] { 10, 11, 0 })]
    public async Task A_split_of_a_snapshot_reads_the_rows_datasets_selects(string spec, int[] ids)
    {
        using var dir = new TempDirectory();
        await WriteSnapshotAsync(dir);

        ParquetSplit split = await ParquetSplit.OpenAsync(dir.Root, spec);
        var summary = new DatasetSummary();
        List<PreferenceRow> rows = await ToListAsync(PreferenceDataset.ReadAsync(split, BadRowPolicy.Strict, summary));

        Assert.Equal(ids.Length, split.RowCount);
        Assert.Equal(ids.Select(id => LocationOf(dir, id)), rows.Select(row => row.Location));
        for (int i = 0; i < ids.Length; i++)
        {
            SampleRows.AssertSame(SampleRows.Pair(ids[i]), rows[i]);
        }
        Assert.Equal(ids.Length, summary.RowsRead);
    }

    [Fact]
    public async Task A_slice_maps_to_row_ranges_of_the_files_it_crosses()
    {
        using var dir = new TempDirectory();
        await WriteSnapshotAsync(dir);

        ParquetSplit split = await ParquetSplit.OpenAsync(dir.Root, "train[5:9]");

        Assert.Equal(
            [
                new ParquetFileRows(dir.Path("data/train-00001-of-00003.parquet"), 1, 2),
                new ParquetFileRows(dir.Path("data/train-00002-of-00003.parquet"), 0, 2),
            ],
            split.Files);
        Assert.Equal("train[5:9]", split.Selection.Spec);
    }

    [Fact]
    public async Task Files_given_one_by_one_are_the_split_train_in_the_given_order()
    {
        using var dir = new TempDirectory();
        await WriteSnapshotAsync(dir);
        string[] files = [dir.Path(Shards[2].Name), dir.Path(Shards[0].Name)];

        ParquetSplit split = await ParquetSplit.OpenFilesAsync(files, "train[:6]");
        List<PreferenceRow> rows = await ToListAsync(PreferenceDataset.ReadAsync(split, BadRowPolicy.Strict, new DatasetSummary()));

        Assert.Equal(new[] { 7, 8, 9, 10, 11, 0 }.Select(id => LocationOf(dir, id)), rows.Select(row => row.Location));
    }

    [Theory]
    [InlineData("validation", "has no split 'validation'; its splits are train, test")]
    [InlineData("train[5:5]", "split 'train[5:5]' selects no row of")]
    [InlineData("train[9:3]", "split 'train[9:3]' selects no row of")]
    [InlineData("train[::]", "is not of the form")]
    public async Task A_split_that_selects_nothing_or_does_not_exist_is_an_error(string spec, string detail)
    {
        using var dir = new TempDirectory();
        await WriteSnapshotAsync(dir);

        var e = await Assert.ThrowsAsync<ArgumentException>(() => ParquetSplit.OpenAsync(dir.Root, spec));

        Assert.Contains(detail, e.Message);
    }

    [Fact]
    public async Task A_single_file_is_the_split_train()
    {
        using var dir = new TempDirectory();
        await WriteSnapshotAsync(dir);
        string file = dir.Path(Shards[3].Name);

        ParquetSplit split = await ParquetSplit.OpenAsync(file, "train[1:]");
        var e = await Assert.ThrowsAsync<ArgumentException>(() => ParquetSplit.OpenAsync(file, "test"));

        Assert.Equal([new ParquetFileRows(file, 1, 1)], split.Files);
        Assert.Contains($"{file} has no split 'test'; its splits are train", e.Message);
    }
}
