using NativeVlm.Data;
using Parquet;
using Xunit;
using static NativeVlm.Tests.Data.DatasetTestReads;

namespace NativeVlm.Tests.Data;

/// <summary>A truncated, overwritten or foreign file is a <see cref="DatasetException"/> naming the file; never a crash or a hang.</summary>
public class CorruptParquetTests
{
    private static async Task<(string Path, byte[] Bytes)> WriteGoodFileAsync(TempDirectory dir)
    {
        string path = dir.Path("train-00000-of-00001.parquet");
        DuckDbParquet.Write(path, DuckDbParquet.PreferenceColumns, Enumerable.Range(0, 50).Select(i => DuckDbParquet.PreferenceTuple(SampleRows.Pair(i))));
        return (path, await File.ReadAllBytesAsync(path));
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.99)]
    public async Task A_truncated_file_is_an_error_naming_it(double keptFraction)
    {
        using var dir = new TempDirectory();
        (string path, byte[] bytes) = await WriteGoodFileAsync(dir);
        await File.WriteAllBytesAsync(path, bytes[..(int)(bytes.Length * keptFraction)]);

        var e = await Assert.ThrowsAsync<DatasetException>(() => ParquetSplit.OpenAsync(path));

        Assert.Equal(path, e.FilePath);
        Assert.StartsWith($"{path}: not a readable parquet file (", e.Message);
    }

    [Fact]
    public async Task A_file_that_is_not_parquet_is_an_error_naming_it()
    {
        using var dir = new TempDirectory();
        string path = dir.Path("data.parquet");
        await File.WriteAllTextAsync(path, "prompt,chosen,rejected\n");

        var e = await Assert.ThrowsAsync<DatasetException>(() => ParquetSplit.OpenAsync(dir.Root));

        Assert.StartsWith($"{path}: not a readable parquet file (", e.Message);
    }

    [Fact]
    public async Task Overwritten_column_data_is_an_error_naming_the_file_and_row_group()
    {
        using var dir = new TempDirectory();
        (string path, byte[] bytes) = await WriteGoodFileAsync(dir);
        ParquetSplit split = await ParquetSplit.OpenAsync(path);
        // The footer (schema, row groups, column offsets) stays; the pages it points to become 0xFF.
        Array.Fill(bytes, (byte)0xFF, 4, bytes.Length / 2);
        await File.WriteAllBytesAsync(path, bytes);

        var e = await Assert.ThrowsAsync<DatasetException>(() => ToListAsync(PreferenceDataset.ReadAsync(split, BadRowPolicy.Strict, new DatasetSummary())));

        Assert.Equal(path, e.FilePath);
        Assert.Null(e.Row);
        Assert.StartsWith($"{path}: row group 0 (rows 0 to 49) cannot be read: ", e.Message);
    }

    [Fact]
    public async Task Row_groups_outside_the_selected_rows_are_not_read()
    {
        using var dir = new TempDirectory();
        string path = dir.Path("train.parquet");
        await NetParquet.WritePreferenceAsync(path, Enumerable.Range(0, 6).Select(SampleRows.Pair), rowGroupSize: 2);
        (long start, long end) = await ColumnChunkBytesAsync(path, rowGroup: 2);
        byte[] bytes = await File.ReadAllBytesAsync(path);
        Array.Fill(bytes, (byte)0xFF, (int)start, (int)(end - start));
        await File.WriteAllBytesAsync(path, bytes);

        ParquetSplit firstRows = await ParquetSplit.OpenAsync(path, "train[:4]");
        List<PreferenceRow> rows = await ToListAsync(PreferenceDataset.ReadAsync(firstRows, BadRowPolicy.Strict, new DatasetSummary()));
        ParquetSplit allRows = await ParquetSplit.OpenAsync(path);
        var e = await Assert.ThrowsAsync<DatasetException>(() => ToListAsync(PreferenceDataset.ReadAsync(allRows, BadRowPolicy.Strict, new DatasetSummary())));

        Assert.Equal([0L, 1, 2, 3], rows.Select(row => row.Location.Row));
        Assert.StartsWith($"{path}: row group 2 (rows 4 to 5) cannot be read: ", e.Message);
    }

    /// <summary>The file bytes [start, end) that hold a row group's column chunks, from the footer.</summary>
    private static async Task<(long Start, long End)> ColumnChunkBytesAsync(string path, int rowGroup)
    {
        await using ParquetReader reader = await ParquetReader.CreateAsync(path);
        List<Parquet.Meta.ColumnMetaData> chunks = reader.OpenRowGroupReader(rowGroup).RowGroup.Columns.Select(column => column.MetaData!).ToList();
        long start = chunks.Min(chunk => chunk.DictionaryPageOffset ?? chunk.DataPageOffset);
        long end = chunks.Max(chunk => (chunk.DictionaryPageOffset ?? chunk.DataPageOffset) + chunk.TotalCompressedSize);
        return (start, end);
    }

    [Theory]
    [InlineData(new byte[] { 0x19, 0xF9, 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 0x00 }, "list size 2147483647 at byte 7 exceeds the 1 bytes left")]
    [InlineData(new byte[] { 0x18, 0x85, 0x01, 0x41, 0x00 }, "binary length 133 at byte 3 exceeds the 2 bytes left")]
    [InlineData(new byte[] { 0x1B, 0xFF, 0xFF, 0x03, 0x00 }, "map size 65535 at byte 4 exceeds the 1 bytes left")]
    [InlineData(new byte[] { 0x1E, 0x00 }, "unknown type 14 at byte 1")]
    [InlineData(new byte[] { 0x15, 0x80, 0x80 }, "the footer ends inside a value")]
    [InlineData(new byte[] { 0x15, 0x02 }, "the footer ends inside a value")]
    public async Task A_footer_that_breaks_the_compact_protocol_is_an_error_naming_the_file(byte[] footer, string detail)
    {
        using var dir = new TempDirectory();
        string path = dir.Path("crafted.parquet");
        await File.WriteAllBytesAsync(path, [.. "PAR1"u8, .. footer, (byte)footer.Length, 0, 0, 0, .. "PAR1"u8]);

        var e = await Assert.ThrowsAsync<DatasetException>(() => ParquetSplit.OpenAsync(path));

        Assert.Equal($"{path}: not a readable parquet file (its {footer.Length}-byte footer is corrupt: {detail})", e.Message);
    }

    /// <summary>
    /// Random bytes written over the footer: Parquet.Net alone loops for minutes on some of these
    /// (the 70th with this seed), which the footer check turns into an error. The loop would be
    /// synchronous, so each trial runs on the thread pool and is given up after a while.
    /// </summary>
    [Fact]
    public async Task Corrupt_footers_are_errors_naming_the_file_and_never_hang()
    {
        using var dir = new TempDirectory();
        (string path, byte[] good) = await WriteGoodFileAsync(dir);
        int footerLength = BitConverter.ToInt32(good, good.Length - 8);
        var random = new Random(1);
        for (int trial = 0; trial < 500; trial++)
        {
            byte[] bytes = (byte[])good.Clone();
            for (int flips = 1 + random.Next(8); flips > 0; flips--)
            {
                bytes[bytes.Length - 8 - footerLength + random.Next(footerLength)] = (byte)random.Next(256);
            }
            await File.WriteAllBytesAsync(path, bytes);

            Task read = Task.Run(() => ReadOrFailNamingTheFileAsync(path));

            Assert.True(await Task.WhenAny(read, Task.Delay(TimeSpan.FromSeconds(20))) == read, $"trial {trial} still runs after 20 s");
            await read;
        }
    }

    private static async Task ReadOrFailNamingTheFileAsync(string path)
    {
        try
        {
            ParquetSplit split = await ParquetSplit.OpenAsync(path);
            await ToListAsync(PreferenceDataset.ReadAsync(split, BadRowPolicy.Strict, new DatasetSummary()));
        }
        catch (DatasetException e)
        {
            Assert.Equal(path, e.FilePath);
        }
        catch (ArgumentException e) when (e.Message.Contains($"selects no row of {path}"))
        {
            // The row counts in the footer became 0: an empty file, as far as anyone can tell.
        }
    }
}
