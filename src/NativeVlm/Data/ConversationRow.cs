namespace NativeVlm.Data;

/// <summary>One user/assistant exchange of a HuggingFaceM4/the_cauldron row; source names the original dataset.</summary>
public sealed record ConversationTurn(string User, string Assistant, string? Source);

/// <summary>
/// One row in the HuggingFaceM4/the_cauldron layout: images and the turns of a conversation about
/// them. Rows reach the caller checked: every turn has a user text (possibly empty) and an assistant
/// text that is not blank.
/// </summary>
public sealed record ConversationRow(RowLocation Location, IReadOnlyList<DatasetImage> Images, IReadOnlyList<ConversationTurn> Turns)
{
    /// <summary>
    /// The conversation as chat messages, one image item per image at the start of the first user
    /// message (the texts carry no placeholders of their own), so the image items match
    /// <see cref="Images"/> one for one.
    /// </summary>
    public IReadOnlyList<ChatMessage> ToMessages()
    {
        var messages = new List<ChatMessage>(2 * Turns.Count);
        for (int i = 0; i < Turns.Count; i++)
        {
            var userContent = new List<ContentItem>();
            if (i == 0)
            {
                userContent.AddRange(Enumerable.Repeat(ContentItem.ImagePlaceholder, Images.Count));
            }
            userContent.Add(ContentItem.FromText(Turns[i].User));
            messages.Add(new ChatMessage("user", userContent));
            messages.Add(new ChatMessage("assistant", [ContentItem.FromText(Turns[i].Assistant)]));
        }
        return messages;
    }
}
