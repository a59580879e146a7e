using System.Text;
using DuckDB.NET.Data;
using NativeVlm.Data;

namespace NativeVlm.Tests.Data;

/// <summary>
/// Writes parquet with DuckDB, an engine independent of Parquet.Net: a table with the Hugging Face
/// column types, filled from SQL literals, then <c>COPY ... (FORMAT PARQUET)</c>. DuckDB writes
/// nested columns as pyarrow does (every level optional, 3-level LIST named list/element); its row
/// groups hold at least 2048 rows.
/// </summary>
internal static class DuckDbParquet
{
    public const string MessagesType = "STRUCT(content STRUCT(text VARCHAR, type VARCHAR)[], role VARCHAR)[]";
    public const string ImagesType = "STRUCT(bytes BLOB, path VARCHAR)[]";
    public const string TurnsType = "STRUCT(\"user\" VARCHAR, assistant VARCHAR, source VARCHAR)[]";

    /// <summary>rlaif-v_formatted's columns, in its order.</summary>
    public const string PreferenceColumns = $"chosen {MessagesType}, rejected {MessagesType}, images {ImagesType}, prompt {MessagesType}";

    public const string ConversationColumns = $"images {ImagesType}, texts {TurnsType}";

    /// <summary>Creates <paramref name="path"/> from a table of <paramref name="columns"/> filled with <paramref name="rows"/> (SQL tuples).</summary>
    public static void Write(string path, string columns, IEnumerable<string> rows, int rowGroupSize = 2048)
    {
        using var connection = new DuckDBConnection("Data Source=:memory:");
        connection.Open();
        using DuckDBCommand command = connection.CreateCommand();
        command.CommandText = $"""
            CREATE TABLE t ({columns});
            INSERT INTO t VALUES {string.Join(",\n", rows)};
            COPY t TO {Text(path)} (FORMAT PARQUET, ROW_GROUP_SIZE {rowGroupSize});
            """;
        command.ExecuteNonQuery();
    }

    public static string PreferenceTuple(PreferenceRow row) =>
        $"({Messages(row.Chosen)}, {Messages(row.Rejected)}, {Images(row.Images)}, {Messages(row.Prompt)})";

    public static string ConversationTuple(ConversationRow row) =>
        $"({Images(row.Images)}, [{string.Join(", ", row.Turns.Select(Turn))}])";

    public static string Messages(IReadOnlyList<ChatMessage> messages) => $"[{string.Join(", ", messages.Select(Message))}]";

    public static string Message(ChatMessage message) =>
        $"{{'content': [{string.Join(", ", message.Content.Select(Item))}], 'role': {Text(message.Role)}}}";

    public static string Item(ContentItem item) =>
        item.Kind == ContentKind.Image ? "{'text': NULL, 'type': 'image'}" : $"{{'text': {Text(item.Text)}, 'type': 'text'}}";

    public static string Images(IReadOnlyList<DatasetImage> images) =>
        $"[{string.Join(", ", images.Select(image => $"{{'bytes': {Blob(image.Bytes)}, 'path': {Text(image.Path)}}}"))}]";

    public static string Turn(ConversationTurn turn) =>
        $"{{'user': {Text(turn.User)}, 'assistant': {Text(turn.Assistant)}, 'source': {Text(turn.Source)}}}";

    public static string Text(string? value) => value is null ? "NULL" : $"'{value.Replace("'", "''")}'";

    public static string Blob(byte[]? bytes)
    {
        if (bytes is null)
        {
            return "NULL";
        }
        var literal = new StringBuilder("'");
        foreach (byte b in bytes)
        {
            literal.Append($"\\x{b:X2}");
        }
        return literal.Append("'::BLOB").ToString();
    }
}
