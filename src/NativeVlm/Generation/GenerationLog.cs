using System.Text.Encodings.Web;
using System.Text.Json;

namespace NativeVlm.Generation;

/// <summary>
/// One generated row as the generate verb logs it: where its prompt came from, the prompt's chat-template
/// render (null for token-id inputs), the dataset's reference answer (if any), the output text (null
/// without a tokenizer), the new token ids, the counts, why it stopped and how long it took.
/// </summary>
public sealed record GenerationRecord(
    string Source,
    string? Prompt,
    string? Reference,
    string? Output,
    IReadOnlyList<int> TokenIds,
    int PromptTokens,
    StopReason StopReason,
    TimeSpan PrefillTime,
    TimeSpan DecodeTime,
    double? DecodeTokensPerSecond)
{
    /// <summary>The stop reason as written: "eos" or "max_new_tokens".</summary>
    public static string Name(StopReason reason) => reason == StopReason.Eos ? "eos" : "max_new_tokens";
}

/// <summary>
/// A JSON Lines file of <see cref="GenerationRecord"/>s, one object a line with the keys source, prompt,
/// reference, output, token_ids, prompt_tokens, new_tokens, stop_reason, prefill_ms, decode_ms and
/// decode_tokens_per_s (null where a record has no value). Each line is flushed as it is written, so an
/// interrupted run keeps what it generated.
/// </summary>
public sealed class GenerationLog : IDisposable
{
    /// <summary>Text as it reads (&lt;image&gt;, not \u003Cimage\u003E): the file is data, never embedded in HTML.</summary>
    private static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly FileStream _stream;

    /// <summary>Creates (or replaces) <paramref name="path"/>.</summary>
    public GenerationLog(string path) => _stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read);

    public void Write(GenerationRecord record)
    {
        using (var json = new Utf8JsonWriter(_stream, Options))
        {
            json.WriteStartObject();
            json.WriteString("source", record.Source);
            json.WriteString("prompt", record.Prompt);
            json.WriteString("reference", record.Reference);
            json.WriteString("output", record.Output);
            json.WriteStartArray("token_ids");
            foreach (int id in record.TokenIds)
            {
                json.WriteNumberValue(id);
            }
            json.WriteEndArray();
            json.WriteNumber("prompt_tokens", record.PromptTokens);
            json.WriteNumber("new_tokens", record.TokenIds.Count);
            json.WriteString("stop_reason", GenerationRecord.Name(record.StopReason));
            json.WriteNumber("prefill_ms", Math.Round(record.PrefillTime.TotalMilliseconds, 3));
            json.WriteNumber("decode_ms", Math.Round(record.DecodeTime.TotalMilliseconds, 3));
            if (record.DecodeTokensPerSecond is double rate)
            {
                json.WriteNumber("decode_tokens_per_s", Math.Round(rate, 3));
            }
            else
            {
                json.WriteNull("decode_tokens_per_s");
            }
            json.WriteEndObject();
        }
        _stream.WriteByte((byte)'\n');
        _stream.Flush();
    }

    public void Dispose() => _stream.Dispose();
}
