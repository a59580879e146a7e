using System.Runtime.CompilerServices;
using Parquet;
using Parquet.Schema;

namespace NativeVlm.Data;

/// <summary>One row as a reader asked for it: its location and the decoded value of each requested column.</summary>
internal sealed record ParquetRow(RowLocation Location, IReadOnlyDictionary<string, object?> Columns);

/// <summary>A top-level column a reader needs, with the shape it must have.</summary>
internal sealed record ColumnRequest(string Name, ColumnShape Shape);

/// <summary>
/// Streams rows of a parquet file a row group at a time: only the requested columns are read, row
/// groups outside the range are not read at all, and no more than one row group's columns are held.
/// </summary>
internal static class ParquetRows
{
    /// <summary>Failures of Parquet.Net on a corrupt or truncated file, which have no common type.</summary>
    public static bool IsReadFailure(Exception e) => e is not (DatasetException or OperationCanceledException);

    /// <exception cref="DatasetException">
    /// The file is not readable parquet, lacks a requested column, has one of another shape, or has
    /// corrupt data; the message names the file (and the column or row group).
    /// </exception>
    public static async IAsyncEnumerable<ParquetRow> ReadAsync(
        ParquetFileRows range, IReadOnlyList<ColumnRequest> columns, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        (ParquetReader reader, List<(string Name, ColumnNode Node)> nodes) = await OpenAsync(range.FilePath, columns, cancellationToken).ConfigureAwait(false);
        await using (reader.ConfigureAwait(false))
        {
            long rowGroupStart = 0;
            for (int index = 0; index < reader.RowGroupCount && rowGroupStart < range.End; index++)
            {
                (long rowCount, List<ParquetRow> rows) =
                    await ReadRowGroupAsync(reader, index, rowGroupStart, range, nodes, cancellationToken).ConfigureAwait(false);
                foreach (ParquetRow row in rows)
                {
                    yield return row;
                }
                rowGroupStart += rowCount;
            }
        }
    }

    /// <summary>Opens the file and binds the requested columns to its schema (which Parquet.Net decodes lazily).</summary>
    private static async Task<(ParquetReader Reader, List<(string Name, ColumnNode Node)> Nodes)> OpenAsync(
        string filePath, IReadOnlyList<ColumnRequest> columns, CancellationToken cancellationToken)
    {
        ParquetReader reader = await OpenReaderAsync(filePath, cancellationToken).ConfigureAwait(false);
        try
        {
            ParquetSchema schema;
            try
            {
                schema = reader.Schema;
            }
            catch (Exception e) when (IsReadFailure(e))
            {
                throw NotParquet(filePath, e);
            }
            return (reader, columns.Select(column => (column.Name, Bind(schema, column, filePath))).ToList());
        }
        catch
        {
            await reader.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>A reader of the file, whose footer has been checked (see <see cref="ParquetFooterCheck"/>) and decoded.</summary>
    /// <exception cref="DatasetException">The file cannot be opened, or is not parquet, or its footer is corrupt.</exception>
    public static async Task<ParquetReader> OpenReaderAsync(string filePath, CancellationToken cancellationToken)
    {
        try
        {
            ParquetFooterCheck.Check(filePath);
            return await ParquetReader.CreateAsync(filePath, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (IsReadFailure(e))
        {
            throw NotParquet(filePath, e);
        }
    }

    private static DatasetException NotParquet(string filePath, Exception e) =>
        new(filePath, null, $"not a readable parquet file ({e.Message})", e);

    private static ColumnNode Bind(ParquetSchema schema, ColumnRequest column, string filePath)
    {
        Field field = schema.Fields.FirstOrDefault(candidate => candidate.Name == column.Name)
            ?? throw new DatasetException(
                filePath, null, $"column '{column.Name}' is missing (the file has {string.Join(", ", schema.Fields.Select(field => field.Name))})");
        return column.Shape.Bind(field, column.Name, filePath);
    }

    /// <summary>The row group's row count and its rows inside the range; a row group before the range is not read.</summary>
    private static async Task<(long RowCount, List<ParquetRow> Rows)> ReadRowGroupAsync(
        ParquetReader reader,
        int index,
        long rowGroupStart,
        ParquetFileRows range,
        List<(string Name, ColumnNode Node)> nodes,
        CancellationToken cancellationToken)
    {
        long rowCount = -1;
        try
        {
            ParquetRowGroupReader rowGroup = reader.OpenRowGroupReader(index);
            rowCount = rowGroup.RowCount;
            if (rowGroupStart + rowCount <= range.Start)
            {
                return (rowCount, []);
            }
            List<ParquetRow> rows = await DecodeRowGroupAsync(range, rowGroup, rowGroupStart, nodes, cancellationToken).ConfigureAwait(false);
            return (rowCount, rows.Where(row => row.Location.Row >= range.Start).ToList());
        }
        catch (Exception e) when (IsReadFailure(e))
        {
            string rows = rowCount < 0 ? "" : $" (rows {rowGroupStart} to {rowGroupStart + rowCount - 1})";
            throw new DatasetException(range.FilePath, null, $"row group {index}{rows} cannot be read: {e.Message}", e);
        }
    }

    /// <summary>Decodes the row group's rows up to the range's end (rows before its start too: levels are read in order).</summary>
    private static async Task<List<ParquetRow>> DecodeRowGroupAsync(
        ParquetFileRows range,
        ParquetRowGroupReader rowGroup,
        long rowGroupStart,
        List<(string Name, ColumnNode Node)> nodes,
        CancellationToken cancellationToken)
    {
        List<LeafNode> leaves = nodes.SelectMany(column => column.Node.Leaves).ToList();
        foreach (LeafNode leaf in leaves)
        {
            await leaf.LoadAsync(rowGroup, cancellationToken).ConfigureAwait(false);
        }
        long rowCount = Math.Min(rowGroup.RowCount, range.End - rowGroupStart);
        var rows = new List<ParquetRow>((int)rowCount);
        for (long row = 0; row < rowCount; row++)
        {
            LeafNode? misaligned = leaves.FirstOrDefault(leaf => leaf.PeekRepetition() != 0);
            if (misaligned is not null)
            {
                throw new InvalidDataException($"column '{misaligned.ColumnPath}' does not start row {rowGroupStart + row} at repetition level 0");
            }
            var values = new Dictionary<string, object?>(nodes.Count, StringComparer.Ordinal);
            foreach ((string name, ColumnNode node) in nodes)
            {
                values[name] = node.Decode();
            }
            rows.Add(new ParquetRow(new RowLocation(range.FilePath, rowGroupStart + row), values));
        }
        LeafNode? overlong = rowCount == rowGroup.RowCount ? leaves.FirstOrDefault(leaf => !leaf.AtEnd) : null;
        if (overlong is not null)
        {
            throw new InvalidDataException($"column '{overlong.ColumnPath}' has more level entries than the row group's {rowCount} rows");
        }
        return rows;
    }
}
