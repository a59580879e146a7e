namespace NativeVlm.Data;

/// <summary>
/// One preference pair in the HuggingFaceH4/rlaif-v_formatted layout: a prompt conversation whose
/// image items stand for <see cref="Images"/> in order, and a chosen and a rejected completion (text
/// only). Rows reach the caller checked: every text item has text, each completion has some text, and
/// the prompt's image items match the images one for one.
/// </summary>
public sealed record PreferenceRow(
    RowLocation Location,
    IReadOnlyList<ChatMessage> Prompt,
    IReadOnlyList<ChatMessage> Chosen,
    IReadOnlyList<ChatMessage> Rejected,
    IReadOnlyList<DatasetImage> Images);
