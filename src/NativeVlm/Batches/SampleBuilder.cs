using NativeVlm.Data;
using NativeVlm.Text;
using NativeVlm.Vision;
using DataMessage = NativeVlm.Data.ChatMessage;
using TemplateMessage = NativeVlm.Text.ChatMessage;

namespace NativeVlm.Batches;

/// <summary>What the SFT loss is computed on.</summary>
public enum SftLoss
{
    /// <summary>Only what the assistant says: each assistant turn's content and the template's end-of-turn text after it.</summary>
    AssistantTurns,

    /// <summary>
    /// Every token but the &lt;image&gt; tokens (and padding): the recipe for training only the
    /// connector of a stitched model on captions, as the tiny-qwen3-smvl fixture's labels are.
    /// </summary>
    WholeText,
}

/// <summary>
/// Token limits, null meaning none (TRL's DPOConfig defaults are 512 / 1024, which a SmolVLM prompt
/// with a split image already exceeds; so nothing is assumed here).
/// </summary>
public sealed record SampleLimits(int? MaxLength = null, int? MaxPromptLength = null, int? MaxCompletionLength = null)
{
    public void Validate()
    {
        foreach ((string name, int? value) in new[] { ("max_length", MaxLength), ("max_prompt_length", MaxPromptLength), ("max_completion_length", MaxCompletionLength) })
        {
            if (value is <= 0)
            {
                throw new ArgumentException($"{name} must be positive, not {value}");
            }
        }
    }
}

/// <summary>
/// Turns dataset rows into training samples: images decoded and processed, the chat template
/// rendered, image placeholders expanded, text tokenized, labels set and limits applied. A row that
/// cannot become a sample (an undecodable image, placeholders that do not match the images, image
/// tokens a limit would cut) goes to the <see cref="BadRowPolicy"/>: counted with its reason, or an
/// error under strict reading. The CLI's dry run and the training loop use the same builder.
/// Templates are rendered without the tokenizer's post-processor tokens (add_special_tokens=False,
/// as TRL tokenizes), since chat templates write their own.
/// </summary>
public sealed class SampleBuilder
{
    /// <summary>The label of a token the loss ignores (PyTorch's cross-entropy ignore_index).</summary>
    public const int IgnoreIndex = -100;

    private readonly VlmProcessor _processor;

    /// <summary>&lt;image&gt; and &lt;fake_token_around_image&gt;, which open and close every expanded image.</summary>
    private readonly int[] _imageBlockIds;

    public SampleBuilder(VlmProcessor processor, SampleLimits limits, SftLoss sftLoss = SftLoss.AssistantTurns)
    {
        limits.Validate();
        _processor = processor;
        _imageBlockIds = [.. processor.ImageBlockTokenIds];
        Limits = limits;
        SftLoss = sftLoss;
    }

    public SampleLimits Limits { get; }

    public SftLoss SftLoss { get; }

    /// <summary>The sample of a preference row, or null when the row was rejected (counted in <paramref name="summary"/>).</summary>
    public DpoSample? BuildDpo(PreferenceRow row, BadRowPolicy policy, DatasetSummary summary) =>
        BuildOrReject(row.Location, () => Dpo(row), policy, summary);

    /// <summary>The sample of a the_cauldron row: its turns, the images at the start of the first user message.</summary>
    public SftSample? BuildSft(ConversationRow row, BadRowPolicy policy, DatasetSummary summary) =>
        BuildOrReject(row.Location, () => Sft(row.Location, row.ToMessages(), row.Images), policy, summary);

    /// <summary>The sample of an image/caption entry: a user message holding the image, the caption as the assistant's answer.</summary>
    public SftSample? BuildSft(CaptionedRow row, BadRowPolicy policy, DatasetSummary summary) =>
        BuildOrReject(row.Location, () => Sft(row.Location, CaptionMessages(row.Caption), [row.Image]), policy, summary);

    /// <summary>The sample of any conversation whose image items stand for <paramref name="images"/> in order.</summary>
    public SftSample? BuildSft(RowLocation location, IReadOnlyList<DataMessage> messages, IReadOnlyList<DatasetImage> images,
        BadRowPolicy policy, DatasetSummary summary) =>
        BuildOrReject(location, () => Sft(location, messages, images), policy, summary);

    private static IReadOnlyList<DataMessage> CaptionMessages(string caption) =>
    [
        new DataMessage("user", [ContentItem.ImagePlaceholder]),
        new DataMessage("assistant", [ContentItem.FromText(caption)]),
    ];

    private static T? BuildOrReject<T>(RowLocation location, Func<T> build, BadRowPolicy policy, DatasetSummary summary)
        where T : class
    {
        try
        {
            return build();
        }
        catch (BadRowException e)
        {
            policy.Reject(new BadRow(location, e.Reason, e.Message), summary);
            return null;
        }
    }

    /// <summary>
    /// TRL's maybe_apply_chat_template + process_row for an explicit prompt: the prompt rendered with
    /// the generation prompt; each completion is the render of prompt + completion after the longest
    /// common prefix with the prompt (the prompt becomes that prefix, in TRL's order: chosen, then
    /// rejected), tokenized and ended with the eos token.
    /// </summary>
    private DpoSample Dpo(PreferenceRow row)
    {
        List<TemplateMessage> prompt = row.Prompt.Select(ToTemplateMessage).ToList();
        if (prompt[^1].Role != "user")
        {
            throw new BadRowException(BadRowReason.InvalidValue,
                $"prompt ends with a '{prompt[^1].Role}' message; a DPO prompt ends with the user's turn (TRL then adds the generation prompt)");
        }
        string promptText = Render(prompt, addGenerationPrompt: true);
        string promptChosen = Render([.. prompt, .. row.Chosen.Select(ToTemplateMessage)], addGenerationPrompt: false);
        promptText = promptText[..CommonPrefixLength(promptText, promptChosen)];
        string chosen = promptChosen[promptText.Length..];
        string promptRejected = Render([.. prompt, .. row.Rejected.Select(ToTemplateMessage)], addGenerationPrompt: false);
        promptText = promptText[..CommonPrefixLength(promptText, promptRejected)];
        string rejected = promptRejected[promptText.Length..];

        RequirePlaceholders(promptText, row.Images.Count, "the rendered prompt");
        RequirePlaceholders(chosen, 0, "the chosen completion");
        RequirePlaceholders(rejected, 0, "the rejected completion");
        SampleImages? images = ProcessImages(row.Images);
        string expanded = images is null ? promptText : _processor.Prompt.Expand(promptText, images.Rows, images.Cols);
        int[] promptIds = _processor.Tokenizer.Encode(expanded, addSpecialTokens: false);
        promptIds = TruncatePrompt(promptIds);

        int completionRoom = Math.Min(Limits.MaxCompletionLength ?? int.MaxValue, (Limits.MaxLength ?? int.MaxValue) - promptIds.Length);
        return new DpoSample(row.Location, promptIds, Completion(chosen, completionRoom), Completion(rejected, completionRoom), images);
    }

    /// <summary>
    /// TRL keeps the last max_prompt_length tokens; here only when the tokens cut hold no image
    /// token, else the row is skipped. A prompt that fills max_length is skipped too (TRL's
    /// keep_end would cut its start, its keep_start every completion token).
    /// </summary>
    private int[] TruncatePrompt(int[] promptIds)
    {
        if (Limits.MaxPromptLength is int maxPrompt && promptIds.Length > maxPrompt)
        {
            int cut = promptIds.Length - maxPrompt;
            if (promptIds.AsSpan(0, cut).IndexOfAny(_imageBlockIds) >= 0)
            {
                throw new BadRowException(BadRowReason.PromptOverMaxPromptLength,
                    $"the prompt is {promptIds.Length} tokens ({CountImageTokens(promptIds)} of them image tokens), max_prompt_length is {maxPrompt}: " +
                    "truncating it would cut image tokens");
            }
            promptIds = promptIds[cut..];
        }
        if (Limits.MaxLength is int maxLength && promptIds.Length >= maxLength)
        {
            throw new BadRowException(BadRowReason.PromptOverMaxLength,
                $"the prompt is {promptIds.Length} tokens ({CountImageTokens(promptIds)} of them image tokens), max_length is {maxLength}: " +
                "no completion token fits after it");
        }
        return promptIds;
    }

    /// <summary>The completion's tokens and eos, cut at the end to <paramref name="room"/> (TRL's max_completion_length, and keep_start for max_length).</summary>
    private int[] Completion(string text, int room)
    {
        int[] ids = [.. _processor.Tokenizer.Encode(text, addSpecialTokens: false), _processor.EosTokenId];
        return ids.Length > room ? ids[..room] : ids;
    }

    /// <summary>
    /// The conversation rendered whole, cut into spans by rendering it turn by turn: an assistant
    /// turn's span runs from the end of the render of the messages before it with the generation
    /// prompt to the end of the render through it. Each span is expanded and tokenized on its own, so
    /// span boundaries are token boundaries; labels are the tokens of assistant spans (or, for
    /// <see cref="SftLoss.WholeText"/>, of everything) with the &lt;image&gt; tokens ignored.
    /// </summary>
    private SftSample Sft(RowLocation location, IReadOnlyList<DataMessage> messages, IReadOnlyList<DatasetImage> images)
    {
        List<TemplateMessage> conversation = messages.Select(ToTemplateMessage).ToList();
        string full = Render(conversation, addGenerationPrompt: false);
        RequirePlaceholders(full, images.Count, "the rendered conversation");
        List<(string Text, bool Trained)> spans = SftLoss == SftLoss.WholeText ? [(full, true)] : AssistantSpans(conversation, full);

        SampleImages? processed = ProcessImages(images);
        var inputIds = new List<int>();
        var labels = new List<int>();
        int nextImage = 0;
        foreach ((string text, bool trained) in spans)
        {
            int placeholders = CountPlaceholders(text);
            if (placeholders > 0 && SftLoss == SftLoss.AssistantTurns && trained)
            {
                throw new BadRowException(BadRowReason.ImageCountMismatch, $"an assistant turn holds {placeholders} {_processor.Prompt.Tokens.Image} placeholders");
            }
            string expanded = placeholders == 0
                ? text
                : _processor.Prompt.Expand(text, processed!.Rows.Skip(nextImage).Take(placeholders).ToList(),
                    processed.Cols.Skip(nextImage).Take(placeholders).ToList());
            nextImage += placeholders;
            int[] ids = _processor.Tokenizer.Encode(expanded, addSpecialTokens: false);
            inputIds.AddRange(ids);
            labels.AddRange(ids.Select(id => trained && id != _processor.ImageTokenId ? id : IgnoreIndex));
        }
        (int[] truncatedIds, int[] truncatedLabels) = TruncateSft([.. inputIds], [.. labels]);
        return new SftSample(location, truncatedIds, truncatedLabels, processed);
    }

    /// <summary>Spans of the whole render, alternately not trained and trained (assistant turns).</summary>
    private List<(string Text, bool Trained)> AssistantSpans(List<TemplateMessage> conversation, string full)
    {
        var spans = new List<(string, bool)>();
        int position = 0;
        for (int i = 0; i < conversation.Count; i++)
        {
            if (conversation[i].Role != "assistant")
            {
                continue;
            }
            string before = Render(conversation[..i], addGenerationPrompt: true);
            string through = Render(conversation[..(i + 1)], addGenerationPrompt: false);
            if (before.Length < position || !through.StartsWith(before, StringComparison.Ordinal) || !full.StartsWith(through, StringComparison.Ordinal))
            {
                throw new BadRowException(BadRowReason.InvalidValue,
                    $"the chat template does not render this conversation turn by turn (message {i} changes what comes before it): " +
                    "the assistant turns cannot be located");
            }
            spans.Add((full[position..before.Length], false));
            spans.Add((full[before.Length..through.Length], true));
            position = through.Length;
        }
        if (spans.Count == 0)
        {
            throw new BadRowException(BadRowReason.InvalidValue, "the conversation has no assistant message to train on");
        }
        spans.Add((full[position..], false));
        return spans;
    }

    /// <summary>TRL's SFT truncation (keep the first max_length tokens), unless it would cut image tokens or every loss token.</summary>
    private (int[] Ids, int[] Labels) TruncateSft(int[] ids, int[] labels)
    {
        if (Limits.MaxLength is not int maxLength || ids.Length <= maxLength)
        {
            return (ids, labels);
        }
        if (ids.AsSpan(maxLength).IndexOfAny(_imageBlockIds) >= 0)
        {
            throw new BadRowException(BadRowReason.ImageTokensOverMaxLength,
                $"the conversation is {ids.Length} tokens ({CountImageTokens(ids)} of them image tokens), max_length is {maxLength}: " +
                "truncating it would cut image tokens");
        }
        if (labels.AsSpan(0, maxLength).IndexOfAnyExcept(IgnoreIndex) < 0)
        {
            throw new BadRowException(BadRowReason.NoLossTokenWithinMaxLength,
                $"the conversation is {ids.Length} tokens and the first {maxLength} (max_length) hold no token the loss counts");
        }
        return (ids[..maxLength], labels[..maxLength]);
    }

    private int CountImageTokens(int[] ids) => ids.Count(id => id == _processor.ImageTokenId);

    /// <summary>Decodes and processes the row's images as one sample; an image that fails is a bad row naming it.</summary>
    private SampleImages? ProcessImages(IReadOnlyList<DatasetImage> images)
    {
        if (images.Count == 0)
        {
            return null;
        }
        try
        {
            List<DecodedImage> decoded = images
                .Select((image, i) => ImageDecoder.Decode(image.Bytes, image.Path is null ? $"images[{i}]" : $"images[{i}] ({image.Path})"))
                .ToList();
            return SampleImages.From(_processor.ImageProcessor.Process([decoded]));
        }
        catch (ImageInputException e)
        {
            throw new BadRowException(BadRowReason.UndecodableImage, e.Message);
        }
    }

    /// <summary>The template's output; the template's own raise_exception refuses the row, any other template fault is an error.</summary>
    private string Render(IReadOnlyList<TemplateMessage> messages, bool addGenerationPrompt)
    {
        try
        {
            return _processor.Template.Render(messages, addGenerationPrompt);
        }
        catch (ChatTemplateException e) when (e.Detail.StartsWith("raise_exception:", StringComparison.Ordinal))
        {
            throw new BadRowException(BadRowReason.InvalidValue, $"the chat template refuses the row: {e.Message}");
        }
    }

    private void RequirePlaceholders(string text, int expected, string what)
    {
        int placeholders = CountPlaceholders(text);
        if (placeholders != expected)
        {
            throw new BadRowException(BadRowReason.ImageCountMismatch,
                $"{what} holds {placeholders} {_processor.Prompt.Tokens.Image} placeholders and the row has {expected} images for it");
        }
    }

    private int CountPlaceholders(string text) => text.Split(_processor.Prompt.Tokens.Image).Length - 1;

    private static int CommonPrefixLength(string a, string b) => a.AsSpan().CommonPrefixLength(b);

    private static TemplateMessage ToTemplateMessage(DataMessage message) =>
        new(message.Role, message.Content.Select(item => item.Kind == ContentKind.Image ? ChatPart.Image : ChatPart.FromText(item.Text!)).ToList());
}
